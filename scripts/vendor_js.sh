#!/usr/bin/env bash
# Vendor the JavaScript that the rendered book would otherwise load from CDNs into book/vendor/
# (a git-ignored build product), which _config.yml serves as Sphinx static files (_static/):
#   mathjax/          MathJax 3 (tex-mml-chtml.js plus the parts it loads on demand)
#   require.js        RequireJS, needed by the widget manager
#   widgets/          @jupyter-widgets/html-manager's embed-amd.js, the icon fonts it references, and
#                     amd-paths.js (ours) so that it finds those fonts from a page at any depth
# Versions are pinned (found with `npm view PKG version`); bump them here. Skips all work when
# book/vendor/ already holds exactly these versions.
set -eo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/book/vendor"
MATHJAX=3.2.2 REQUIREJS=2.3.8 HTML_MANAGER=1.0.15
stamp="mathjax-$MATHJAX requirejs-$REQUIREJS html-manager-$HTML_MANAGER layout-3"
if [ "$(cat "$DEST/.versions" 2>/dev/null)" = "$stamp" ]; then
  echo "== vendored JS up to date ($stamp)"
  exit 0
fi
command -v npm >/dev/null || {
  echo "error: npm is needed once to vendor MathJax / require.js / the widget manager" \
       "(Debian: apt-get install npm)" >&2
  exit 1
}

tmp="$(mktemp -d)"
out="$(mktemp -d "$ROOT/book/.vendor-XXXXXX")"  # staged beside DEST, then swapped in whole
trap 'rm -rf "$tmp" "$out"' EXIT
echo "== vendoring $stamp into book/vendor/"
npm install --prefix "$tmp/npm" --no-save --no-audit --no-fund --ignore-scripts --loglevel=error \
  "mathjax@$MATHJAX" "requirejs@$REQUIREJS" "@jupyter-widgets/html-manager@$HTML_MANAGER" >/dev/null
mods="$tmp/npm/node_modules"
chmod 755 "$out"
mkdir -p "$out/mathjax/output" "$out/widgets"

# MathJax: the combined TeX+MathML -> CommonHTML component, and what it fetches lazily from its own
# folder: TeX extensions (\require, autoload), the CHTML fonts, the menu's renderer switch (SVG),
# and the accessibility tools with the speech-rule engine. The other combined builds, the node
# entry point and the server-side adaptors are not needed in a browser.
mj="$mods/mathjax/es5"
cp "$mj/tex-mml-chtml.js" "$out/mathjax/"
cp -r "$mj/input" "$mj/ui" "$mj/a11y" "$mj/sre" "$out/mathjax/"
cp -r "$mj/output/chtml" "$mj/output/chtml.js" "$mj/output/svg" "$mj/output/svg.js" "$out/mathjax/output/"
cp "$mods/mathjax/LICENSE" "$out/mathjax/LICENSE"

cp "$mods/requirejs/require.js" "$out/require.js"

# embed-amd.js bundles @jupyter-widgets/base, controls and output; its CSS points at the Font
# Awesome fonts next to it (woff2/woff are what current browsers fetch; ttf as a fallback)
hm="$mods/@jupyter-widgets/html-manager"
cp "$hm/dist/embed-amd.js" "$out/widgets/"
cp "$hm"/dist/*.woff2 "$hm"/dist/*.woff "$hm"/dist/*.ttf "$out/widgets/"
cp "$hm/LICENSE" "$out/widgets/LICENSE" 2>/dev/null || true
# RequireJS resolves module URLs against the page, so from book/executed/x.html the widget manager
# would look for its fonts under book/executed/@jupyter-widgets/...; loaded between require.js and
# embed-amd.js (see nb_ipywidgets_js in _config.yml), this maps its module folder onto this one.
cat > "$out/widgets/amd-paths.js" <<'JS'
(function () {
  var here = document.currentScript.src.replace(/\/[^\/]*$/, "");
  require.config({paths: {"@jupyter-widgets/html-manager/dist": here}});
})();
JS

echo "$stamp" > "$out/.versions"
rm -rf "$DEST"
mv "$out" "$DEST"
echo "== vendored $(du -sh "$DEST" | cut -f1) into book/vendor/"
