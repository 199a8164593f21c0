// The status page: one self-contained HTML document (inline CSS, inline SVG, a few lines of
// inline JS; nothing fetched from another host, no fonts), rendered entirely on the server so it
// reads without JS. The script only re-fetches this same page every 5 s and swaps in the new
// <main>: one renderer, and the chart stays the engine's own samples and clock.
#include <algorithm>
#include <cmath>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "authsync/status/router.hpp"
#include "text.hpp"

namespace authsync::status {

namespace {

using detail::html_escape;

constexpr std::int64_t kChartWindowSeconds = 15 * 60;

// Chart geometry, in SVG user units.
constexpr double kWidth = 640;
constexpr double kHeight = 220;
constexpr double kLeft = 56;
constexpr double kRight = 16;
constexpr double kTop = 12;
constexpr double kBottom = 44;
constexpr double kPlotWidth = kWidth - kLeft - kRight;
constexpr double kPlotHeight = kHeight - kTop - kBottom;

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

std::string_view state_class(const std::string& state) {
    if (state == "streaming") return "ok";
    if (state == "failed") return "bad";
    return "warn";
}

std::string time_or(const std::optional<PgTimestamp>& t, std::string_view otherwise) {
    return t ? t->to_iso8601() : std::string(otherwise);
}

std::string duration(double seconds) {
    if (!std::isfinite(seconds) || seconds < 0) return "unknown";
    const auto s = static_cast<std::int64_t>(seconds);
    if (s < 60) return fmt::format("{} s", s);
    if (s < 3600) return fmt::format("{} min {} s", s / 60, s % 60);
    if (s < 86400) return fmt::format("{} h {} min", s / 3600, s % 3600 / 60);
    return fmt::format("{} d {} h", s / 86400, s % 86400 / 3600);
}

// The smallest of 1, 2, 5 x 10^k at or above v (at least 1 s), so axis labels stay round.
double nice_ceiling(double v) {
    if (!(v > 1)) return 1;
    const double p = std::pow(10.0, std::floor(std::log10(v)));
    const double m = v / p;
    const double step = m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10;
    return step * p;
}

std::string lag_chart(const Snapshot& s) {
    const double now = static_cast<double>(s.now.unix_micros()) / 1e6;
    const double from = now - static_cast<double>(kChartWindowSeconds);

    struct Point {
        double t;
        double lag;
    };
    std::vector<Point> points;
    if (s.lag_history != nullptr) {
        for (const LagSample& sample : s.lag_history->samples()) {
            const auto t = static_cast<double>(sample.unix_seconds);
            if (t < from || !std::isfinite(sample.lag_seconds)) continue;
            points.push_back({std::min(t, now), std::max(sample.lag_seconds, 0.0)});
        }
    }
    double top = 0;
    for (const Point& p : points) top = std::max(top, p.lag);
    top = nice_ceiling(top);

    const auto x = [&](double t) {
        return kLeft + (t - from) / static_cast<double>(kChartWindowSeconds) * kPlotWidth;
    };
    const auto y = [&](double lag) { return kTop + kPlotHeight - lag / top * kPlotHeight; };

    std::string svg = fmt::format(
        "<svg id=\"lag-chart\" viewBox=\"0 0 {} {}\" role=\"img\" "
        "aria-label=\"lag in seconds over the last 15 minutes\">\n",
        kWidth, kHeight);
    // Horizontal grid and y labels at 0, half and the top.
    for (const double v : {0.0, top / 2, top}) {
        svg += fmt::format(
            "<line class=\"grid\" x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\"/>"
            "<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{} s</text>\n",
            kLeft, y(v), kLeft + kPlotWidth, y(v), kLeft - 6, y(v) + 4, v);
    }
    // x labels every 5 minutes.
    for (int minutes = 15; minutes >= 0; minutes -= 5) {
        const double at = x(now - minutes * 60.0);
        svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}</text>\n", at,
                           kTop + kPlotHeight + 16,
                           minutes == 0 ? std::string("now") : fmt::format("-{} min", minutes));
    }
    svg += fmt::format(
        "<line class=\"axis\" x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{0:.1f}\" y2=\"{2:.1f}\"/>"
        "<line class=\"axis\" x1=\"{0:.1f}\" y1=\"{2:.1f}\" x2=\"{3:.1f}\" y2=\"{2:.1f}\"/>\n",
        kLeft, kTop, kTop + kPlotHeight, kLeft + kPlotWidth);
    svg += fmt::format(
        "<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">time (last 15 min)</text>\n"
        "<text transform=\"translate(14 {:.1f}) rotate(-90)\" text-anchor=\"middle\">"
        "lag (s)</text>\n",
        kLeft + kPlotWidth / 2, kHeight - 6, kTop + kPlotHeight / 2);
    if (points.empty()) {
        svg += fmt::format(
            "<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">no samples yet</text>\n",
            kLeft + kPlotWidth / 2, kTop + kPlotHeight / 2);
    } else {
        svg += "<polyline class=\"line\" points=\"";
        for (std::size_t i = 0; i < points.size(); ++i) {
            svg +=
                fmt::format("{}{:.1f},{:.1f}", i == 0 ? "" : " ", x(points[i].t), y(points[i].lag));
        }
        svg += "\"/>\n";
        // The newest sample, visible even when it is the only one.
        svg += fmt::format("<circle class=\"dot\" cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\"/>\n",
                           x(points.back().t), y(points.back().lag));
    }
    svg += "</svg>\n";
    return svg;
}

std::string slot_line(const SlotHealth& h) {
    if (!h.wal_status && !h.retained_wal_bytes && !h.safe_wal_size_bytes) return "unknown";
    std::string line = html_escape(h.wal_status.value_or("unknown"));
    if (h.retained_wal_bytes) line += fmt::format(" · {} bytes retained", *h.retained_wal_bytes);
    if (h.safe_wal_size_bytes) line += fmt::format(" · {} bytes safe", *h.safe_wal_size_bytes);
    if (h.checked_at) line += fmt::format(" · checked {}", h.checked_at->to_iso8601());
    return line;
}

}  // namespace

std::string render_page(const Snapshot& s) {
    std::string html(kHead);
    html += "<main>\n<h1>authsync</h1>\n";
    html += fmt::format(
        "<p class=\"sub\">slot <code>{}</code> · publication <code>{}</code> · "
        "version {}</p>\n",
        html_escape(s.slot), html_escape(s.publication), html_escape(s.version));
    html += "<dl>\n";
    html += fmt::format("<dt>State</dt><dd><span id=\"state\" class=\"{}\">{}</span></dd>\n",
                        state_class(s.state), html_escape(s.state));
    html += fmt::format(
        "<dt>Lag</dt><dd><span id=\"lag-seconds\">{}</span> s · "
        "<span id=\"lag-bytes\">{}</span> bytes</dd>\n",
        std::isfinite(s.lag_seconds) ? fmt::format("{:.1f}", s.lag_seconds) : "unknown",
        s.lag_bytes);
    html += fmt::format("<dt>Applied LSN</dt><dd id=\"applied-lsn\">{}</dd>\n",
                        s.applied_lsn.to_string());
    html += fmt::format("<dt>Provider WAL LSN</dt><dd id=\"provider-wal-lsn\">{}</dd>\n",
                        s.provider_wal_lsn.to_string());
    html += fmt::format("<dt>Last commit</dt><dd>{}</dd>\n", time_or(s.last_commit_time, "none"));
    html += fmt::format("<dt>Last applied</dt><dd>{}</dd>\n", time_or(s.last_applied_at, "none"));
    html += fmt::format(
        "<dt>End-to-end latency</dt><dd>{}</dd>\n",
        s.e2e_latency_ms ? fmt::format("{:.1f} ms", *s.e2e_latency_ms) : std::string("unknown"));
    html += fmt::format(
        "<dt>Applied</dt><dd>{} transactions in {} batches · {} reconnects · {} errors</dd>\n",
        s.txns_applied, s.batches, s.reconnects, s.errors);
    html += fmt::format("<dt>Slot WAL</dt><dd>{}</dd>\n", slot_line(s.slot_health));
    if (s.last_error.empty()) {
        html += "<dt>Last error</dt><dd id=\"last-error\">none</dd>\n";
    } else {
        html += fmt::format("<dt>Last error</dt><dd id=\"last-error\"><pre>{}</pre>{}</dd>\n",
                            html_escape(s.last_error),
                            s.last_error_at ? " at " + s.last_error_at->to_iso8601() : "");
    }
    html += "</dl>\n<h2>Lag, last 15 minutes</h2>\n";
    html += lag_chart(s);
    html += fmt::format("<footer>as of <time>{}</time> · up {}</footer>\n</main>\n",
                        s.now.to_iso8601(), duration(s.uptime_seconds));
    html += kTail;
    return html;
}

}  // namespace authsync::status
