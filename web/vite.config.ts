import { defineConfig } from "vitest/config";
import react from "@vitejs/plugin-react";
import { fileURLToPath } from "node:url";

const here = fileURLToPath(new URL(".", import.meta.url));

// The build lands in backend/webdist, which the Go binary embeds
// (public/placeholder.html is copied back so a clean tree stays buildable).
export default defineConfig({
  root: here,
  plugins: [react()],
  build: {
    outDir: fileURLToPath(new URL("../backend/webdist", import.meta.url)),
    emptyOutDir: true,
    target: "es2022",
    // The lazy editor chunk (CodeMirror 6 + the yaml parser) is ~500 KB
    // minified, 160 KB gzipped; the main bundle is far below this.
    chunkSizeWarningLimit: 520,
  },
  server: {
    proxy: { "/api": { target: "https://127.0.0.1:8443", secure: false, ws: true } },
  },
  test: {
    root: here,
    include: ["src/**/*.test.ts"],
    environment: "node",
    // styles.test.ts reads styles.css?raw: CSS must not be emptied.
    css: { include: [/styles\.css/] },
  },
});
