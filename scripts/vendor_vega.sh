#!/usr/bin/env bash
# Rebuild .dvc/plots_offline.html: DVC's plot page with Vega, Vega-Lite and vega-embed inlined, so
# `dvc plots show` draws its charts without a network (DVC's own page loads them from a CDN).
# .dvc/config points `plots.html_template` at it. Needs npm (the npm registry) only when rebuilding.
set -euo pipefail
cd "$(dirname "$0")/.."
VEGA=${VEGA:-vega@5.33.1} LITE=${LITE:-vega-lite@5.23.0} EMBED=${EMBED:-vega-embed@6.29.0}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "$VEGA" "$LITE" "$EMBED" >/dev/null)
for f in "$tmp"/*.tgz; do d="${f%.tgz}"; mkdir -p "$d" && tar xzf "$f" -C "$d"; done
out=.dvc/plots_offline.html
{
  printf '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n{refresh_tag}\n<title>DVC Plot (offline)</title>\n'
  printf '<!-- Vega, Vega-Lite and vega-embed (BSD-3-Clause, (c) University of Washington Interactive Data Lab),\n'
  printf '     inlined by scripts/vendor_vega.sh: %s %s %s. No scripts placeholder: nothing from a CDN. -->\n' "$VEGA" "$LITE" "$EMBED"
  for js in vega/package/build/vega.min.js vega-lite/package/build/vega-lite.min.js vega-embed/package/build/vega-embed.min.js; do
    src=$(ls -d "$tmp"/${js%%/*}-[0-9]*/)${js#*/}
    printf '<script>\n'; sed 's#</script#<\\/script#g' "$src"; printf '\n</script>\n'
  done
  printf '<style>table { border-spacing: 15px; }</style>\n</head>\n<body>\n{plot_divs}\n</body>\n</html>\n'
} > "$out"
echo "wrote $out ($(wc -c < "$out") bytes)"
