#!/usr/bin/env bash
# Checks a report.html in a real browser: headless Chromium opens it offline (file://) at
# 1280x800 and this fails unless
#   (a) the page logs nothing to the console (Chromium's log does not say a message's level,
#       and the page logs nothing by design, so any CONSOLE line, an error or an Uncaught
#       exception, fails it);
#   (b) the verdict is visible without scrolling: a copy of the page with a probe script
#       appended writes `verdict-visible=yes` (the top of #verdict is inside the window) into
#       the DOM, which --dump-dom prints; the probe also clicks a sortable table's header
#       and writes `sorted=yes` when the script sorted it;
#   (c) a screenshot is saved as OUTDIR/report.png.
# Usage: scripts/html_check.sh REPORT.html OUTDIR. Exit 0: all passed; 1: a check failed;
# 3: no Chromium (install it with scripts/setup.sh). OUTDIR keeps the probe page, the DOM
# dump and Chromium's log for reading after a failure.
set -euo pipefail
if (($# != 2)); then
  echo "usage: $0 REPORT.html OUTDIR" >&2
  exit 2
fi
html="$(realpath "$1")"
mkdir -p "$2"
out="$(realpath "$2")"
browser="$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)"
if [[ -z "$browser" ]]; then
  echo "html_check: chromium not found" >&2
  exit 3
fi

profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
# --no-sandbox: Chromium refuses to run as root with its sandbox (CI containers run as root).
chrome() {
  timeout 120 "$browser" --headless --no-sandbox --disable-gpu --no-first-run \
    --no-default-browser-check --disable-extensions --user-data-dir="$profile" \
    --enable-logging=stderr --v=0 --window-size=1280,800 "$@"
}

probe="$out/probe.html"
cp "$html" "$probe"
cat >>"$probe" <<'JS'
<script>
(function () {
  var v = document.getElementById("verdict");
  var top = v ? v.getBoundingClientRect().top : NaN;
  var visible = v !== null && top >= 0 && top < window.innerHeight;
  var sorted = "no-table";
  var th = document.querySelector("table.sortable th");
  if (th) { th.click(); sorted = th.getAttribute("aria-sort") === "ascending" ? "yes" : "no"; }
  var p = document.createElement("p");
  p.id = "html-check";
  p.textContent = "verdict-visible=" + (visible ? "yes" : "no") + " verdict-top=" + Math.round(top) +
    " window-height=" + window.innerHeight + " sorted=" + sorted;
  document.body.appendChild(p);
})();
</script>
JS

fail=0
chrome --dump-dom "file://$probe" >"$out/dom.html" 2>"$out/chromium-dom.log" || {
  echo "html_check: chromium failed on the probe page (log: $out/chromium-dom.log)" >&2
  exit 1
}
chrome --screenshot="$out/report.png" "file://$html" >/dev/null 2>"$out/chromium-screenshot.log" || {
  echo "html_check: chromium failed to take the screenshot (log: $out/chromium-screenshot.log)" >&2
  exit 1
}

if grep -hE 'CONSOLE|Uncaught' "$out/chromium-dom.log" "$out/chromium-screenshot.log"; then
  echo "html_check: FAIL (a): the page wrote to the console (above)" >&2
  fail=1
fi
result="$(grep -o '<p id="html-check">[^<]*' "$out/dom.html" | sed 's/.*>//' || true)"
echo "html_check: ${result:-no probe result}"
if [[ "$result" != *"verdict-visible=yes"* ]]; then
  echo "html_check: FAIL (b): the verdict is not visible without scrolling at 1280x800" >&2
  fail=1
fi
if [[ "$result" == *"sorted=no" ]]; then
  echo "html_check: FAIL: clicking a sortable table's header did not sort it" >&2
  fail=1
fi
if [[ ! -s "$out/report.png" ]]; then
  echo "html_check: FAIL (c): no screenshot at $out/report.png" >&2
  fail=1
fi
((fail == 0)) && echo "html_check: ok ($out/report.png)"
exit "$fail"
