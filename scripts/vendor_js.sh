#!/usr/bin/env bash
# Vendor the JavaScript the rendered book would otherwise load from CDNs (MathJax, require.js, the
# Jupyter widget manager) into book/vendor/, which _config.yml serves as static files. Build product.
set -eo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/book/vendor"
MATHJAX=3.2.2 REQUIREJS=2.3.8 HTML_MANAGER=1.0.15
stamp="mathjax-$MATHJAX requirejs-$REQUIREJS html-manager-$HTML_MANAGER"
[ "$(cat "$DEST/.versions" 2>/dev/null)" = "$stamp" ] && exit 0
command -v npm >/dev/null || { echo "error: npm is needed to vendor MathJax/require.js (apt-get install npm)" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "== vendoring $stamp"
npm install --prefix "$tmp" --no-save --no-audit --no-fund --ignore-scripts --silent \
  "mathjax@$MATHJAX" "requirejs@$REQUIREJS" "@jupyter-widgets/html-manager@$HTML_MANAGER" >/dev/null
rm -rf "$DEST"
mkdir -p "$DEST/mathjax" "$DEST/widgets"
cp -r "$tmp/node_modules/mathjax/es5/." "$DEST/mathjax/"
cp "$tmp/node_modules/requirejs/require.js" "$DEST/require.js"
cp "$tmp/node_modules/@jupyter-widgets/html-manager/dist/"embed-amd.js* "$DEST/widgets/"
echo "$stamp" > "$DEST/.versions"
