import { svelte } from "@sveltejs/vite-plugin-svelte";
import { svelteTesting } from "@testing-library/svelte/vite";
import { defineConfig } from "vitest/config";

// The console's UI: built into ui/dist, which the root tauri.conf.json embeds in the binary.
export default defineConfig({
  plugins: [svelte(), svelteTesting()],
  base: "./",
  clearScreen: false,
  build: { outDir: "dist", emptyOutDir: true, target: "safari16", sourcemap: false },
  test: {
    environment: "jsdom",
    include: ["tests/**/*.test.ts"],
    setupFiles: ["tests/setup.ts"],
  },
});
