// The status page: one self-contained HTML document (inline CSS, inline SVG, a few lines of
// inline JS; nothing fetched from another host, no fonts), rendered entirely on the server so it
// reads without JS. The script only re-fetches this same page every 5 s and swaps in the new
// <main>: one renderer, and the chart stays the engine's own samples and clock. What the page
// shows, and where, is each field's PageItem (fields.cpp); this file is the frame around them.
#include <fmt/format.h>

#include <string_view>
#include <vector>

#include "authsync/status/fields.hpp"
#include "authsync/status/router.hpp"

namespace authsync::status {

namespace {

constexpr std::string_view kHead = R"(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>authsync</title>
<style>
:root { color-scheme: light dark; font-family: system-ui, sans-serif; }
body { max-width: 52rem; margin: 1.5rem auto; padding: 0 1rem; line-height: 1.45; }
h1 { font-size: 1.4rem; margin: 0; }
h2 { font-size: 1rem; margin: 1.25rem 0 .5rem; }
.sub, dt, footer, #refresh { color: #777; }
.sub { margin: .25rem 0 1rem; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .3rem 1.25rem; margin: 0; }
dd { margin: 0; font-variant-numeric: tabular-nums; }
#state { font-weight: 600; }
.ok { color: #1a7f37; } .warn { color: #9a6700; } .bad { color: #cf222e; }
pre { margin: 0; white-space: pre-wrap; word-break: break-word; }
svg { width: 100%; max-width: 40rem; height: auto; }
svg text { fill: currentColor; font-size: 11px; }
.axis { stroke: #888; } .grid { stroke: #8884; }
.line { fill: none; stroke: #0969da; stroke-width: 2; } .dot { fill: #0969da; }
footer { margin-top: 1rem; font-size: .85rem; }
</style>
</head>
<body>
)";

// Same origin, relative to this page; on any failure (e.g. 401 when a token is required) it
// stops and the server-rendered view stays.
constexpr std::string_view kTail = R"(<p id="refresh"></p>
<script>
(() => {
  const note = document.getElementById('refresh');
  const timer = setInterval(async () => {
    try {
      const r = await fetch(location.pathname, { cache: 'no-store' });
      if (!r.ok) throw new Error('HTTP ' + r.status);
      const page = new DOMParser().parseFromString(await r.text(), 'text/html');
      const fresh = page.querySelector('main');
      if (fresh) document.querySelector('main').replaceWith(fresh);
    } catch (e) {
      clearInterval(timer);
      note.textContent = 'auto-refresh stopped: ' + e.message;
    }
  }, 5000);
})();
</script>
</body>
</html>
)";

// The parts of the page at `place`, in the list's order.
std::vector<const PageItem*> at(Place place, std::span<const Field> list) {
    std::vector<const PageItem*> items;
    for (const Field& f : list) {
        if (f.page && f.page->place == place) items.push_back(&*f.page);
    }
    return items;
}

std::string joined(Place place, std::span<const Field> list, const Snapshot& s) {
    std::string line;
    for (const PageItem* item : at(place, list)) {
        if (!line.empty()) line += " · ";
        line += item->html(s);
    }
    return line;
}

}  // namespace

std::string render_page(const Snapshot& s, std::span<const Field> list) {
    std::string html(kHead);
    html += "<main>\n<h1>authsync</h1>\n";
    if (const auto header = joined(Place::Header, list, s); !header.empty()) {
        html += fmt::format("<p class=\"sub\">{}</p>\n", header);
    }
    html += "<dl>\n";
    for (const PageItem* row : at(Place::Row, list)) {
        const auto id = row->id.empty() ? std::string() : fmt::format(" id=\"{}\"", row->id);
        html += fmt::format("<dt>{}</dt><dd{}>{}</dd>\n", row->label, id, row->html(s));
    }
    html += "</dl>\n";
    for (const PageItem* section : at(Place::Section, list)) {
        html += fmt::format("<h2>{}</h2>\n", section->label);
        html += section->html(s);
    }
    html += fmt::format("<footer>{}</footer>\n</main>\n", joined(Place::Footer, list, s));
    html += kTail;
    return html;
}

std::string render_page(const Snapshot& snapshot) {
    return render_page(snapshot, fields());
}

}  // namespace authsync::status
