// The version `weft --version` prints (package.json's), kept apart so the
// installed entry (bin.ts) can answer --version without loading anything else.
export const VERSION = '0.1.0';
