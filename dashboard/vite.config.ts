// Builds the dashboard into dist/dashboard, which the master serves (src/master/dashboard.ts).
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/',
  logLevel: 'warn',
  build: {
    outDir: fileURLToPath(new URL('../dist/dashboard', import.meta.url)),
    emptyOutDir: true,
    target: 'es2022',
    // Every supported browser has module preload; the polyfill would only add bytes.
    modulePreload: { polyfill: false },
    reportCompressedSize: false,
    sourcemap: false,
  },
  // JSX through Preact's automatic runtime (tsconfig.json says the same for the type checker).
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
});
