// The page's chart of lag over the last 15 minutes: inline SVG drawn on the server from the
// engine's own samples and clock, with labelled axes and round y labels.
#include "lag_chart.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace authsync::status::detail {

namespace {

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

// The smallest of 1, 2, 5 x 10^k at or above v (at least 1 s), so axis labels stay round.
double nice_ceiling(double v) {
    if (!(v > 1)) return 1;
    const double p = std::pow(10.0, std::floor(std::log10(v)));
    const double m = v / p;
    const double step = m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10;
    return step * p;
}

}  // namespace

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

}  // namespace authsync::status::detail
