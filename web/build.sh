#!/bin/sh
# Rebuilds the console bundle in web/dist/ (index.html, console.js, console.css)
# from src/ with the exact dependency versions in package-lock.json.
set -eu
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
npm run build
