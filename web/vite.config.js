// The console is a static site: index.html, one JS and one CSS bundle, read from any base URL
// (an S3 website bucket on LocalStack or AWS). Its settings come from config.json at run time.
import { defineConfig } from 'vite';
import preact from '@preact/preset-vite';

export default defineConfig({
  base: './',
  plugins: [preact()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 200,
  },
});
