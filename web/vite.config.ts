import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// The gateway (port 8000) routes every /v1 path to its service; the dev server only forwards to it.
export default defineConfig({
  plugins: [react()],
  server: { proxy: { "/v1": "http://127.0.0.1:8000" } },
  build: { outDir: "dist", sourcemap: false },
});
