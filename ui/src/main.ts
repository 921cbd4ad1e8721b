import { mount } from "svelte";
import App from "./App.svelte";
import { installGlobalHandlers } from "./lib/errors";
import "./style.css";

installGlobalHandlers();
const target = document.getElementById("app");
if (!target) throw new Error("no #app element");
export default mount(App, { target });
