-- Public assets: served to anyone at a permanent, cacheable URL (through the CDN when one is
-- configured); every other file only through signed, expiring links.
ALTER TABLE assets ADD COLUMN public INTEGER NOT NULL DEFAULT 0;
