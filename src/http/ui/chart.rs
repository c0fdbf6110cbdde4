//! Server-rendered SVG charts for the support UI: no script, no inline
//! style (the pages' Content-Security-Policy allows neither), colours from
//! classes in `app.css`, a `viewBox` so a chart fits a phone's width, and a
//! text alternative (`role="img"`, `<title>`, `<desc>`) that says the
//! numbers the picture shows. The numbers are also in `data-*` attributes,
//! which the browser test compares with the page's tables.

use std::fmt::Write as _;

use super::view::number as angka;

/// Escapes text for SVG (XML) content and attribute values.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One moment of a campaign's progress: messages delivered, not delivered
/// (a final status other than delivered) and still pending, cumulative.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgressPoint {
    /// Unix ms.
    pub at: i64,
    pub delivered: i64,
    pub not_delivered: i64,
    pub pending: i64,
}

const W: f64 = 600.0;
const H: f64 = 220.0;
const LEFT: f64 = 8.0;
const BOTTOM: f64 = 24.0;

/// A stacked area chart of `points` (time order): delivered at the bottom,
/// then not delivered, then pending; `from`/`to` label the time axis.
pub fn progress(points: &[ProgressPoint], from: &str, to: &str) -> String {
    let last = points.last().copied().unwrap_or(ProgressPoint {
        at: 0,
        delivered: 0,
        not_delivered: 0,
        pending: 0,
    });
    let total = last.delivered + last.not_delivered + last.pending;
    let desc = format!(
        "Sampai {to}: {} diterima, {} tidak sampai, {} belum selesai, dari {} pesan.",
        angka(last.delivered),
        angka(last.not_delivered),
        angka(last.pending),
        angka(total)
    );
    let mut svg = format!(
        "<svg class=\"chart\" id=\"grafik-kemajuan\" viewBox=\"0 0 {W} {H}\" role=\"img\" \
         aria-labelledby=\"grafik-kemajuan-judul grafik-kemajuan-isi\" \
         data-delivered=\"{}\" data-not-delivered=\"{}\" data-pending=\"{}\" data-total=\"{total}\">\
         <title id=\"grafik-kemajuan-judul\">Kemajuan kampanye dari waktu ke waktu</title>\
         <desc id=\"grafik-kemajuan-isi\">{}</desc>",
        last.delivered,
        last.not_delivered,
        last.pending,
        esc(&desc)
    );
    let plot_h = H - BOTTOM;
    if points.len() >= 2 && total > 0 {
        let (t0, t1) = (points[0].at, last.at.max(points[0].at + 1));
        let x = |t: i64| LEFT + (W - 2.0 * LEFT) * (t - t0) as f64 / (t1 - t0) as f64;
        let y = |v: i64| plot_h - plot_h * v as f64 / total as f64;
        // Band k lies between the cumulative sums of the first k and k+1
        // series.
        let series = |p: &ProgressPoint| [p.delivered, p.not_delivered, p.pending];
        for (k, class) in ["delivered", "not-delivered", "pending"].iter().enumerate() {
            let below = |p: &ProgressPoint| series(p)[..k].iter().sum::<i64>();
            let above = |p: &ProgressPoint| series(p)[..=k].iter().sum::<i64>();
            let mut d = String::new();
            for (i, p) in points.iter().enumerate() {
                let _ = write!(
                    d,
                    "{}{:.1},{:.1} ",
                    if i == 0 { "M" } else { "L" },
                    x(p.at),
                    y(above(p))
                );
            }
            for p in points.iter().rev() {
                let _ = write!(d, "L{:.1},{:.1} ", x(p.at), y(below(p)));
            }
            let _ = write!(
                svg,
                "<path class=\"area {class}\" d=\"{}Z\"/>",
                d.trim_end()
            );
        }
    } else {
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" class=\"axis\">Belum ada hasil akhir</text>",
            W / 2.0,
            plot_h / 2.0
        );
    }
    let _ = write!(
        svg,
        "<line class=\"axis-line\" x1=\"{LEFT}\" y1=\"{plot_h}\" x2=\"{}\" y2=\"{plot_h}\"/>\
         <text class=\"axis\" x=\"{LEFT}\" y=\"{}\">{}</text>\
         <text class=\"axis\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text></svg>",
        W - LEFT,
        H - 6.0,
        esc(from),
        W - LEFT,
        H - 6.0,
        esc(to)
    );
    svg
}

/// Horizontal bars, one per `(label, count)`, longest first as given; the
/// count written after each bar.
pub fn bars(id: &str, title: &str, items: &[(String, i64)]) -> String {
    const ROW: f64 = 28.0;
    const LABEL: f64 = 230.0;
    let h = ROW * items.len().max(1) as f64 + 4.0;
    let max = items.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    let desc = items
        .iter()
        .map(|(l, n)| format!("{l}: {}", angka(*n)))
        .collect::<Vec<_>>()
        .join("; ");
    let mut svg = format!(
        "<svg class=\"chart\" id=\"{id}\" viewBox=\"0 0 {W} {h}\" role=\"img\" \
         aria-labelledby=\"{id}-judul {id}-isi\" data-total=\"{}\">\
         <title id=\"{id}-judul\">{}</title><desc id=\"{id}-isi\">{}</desc>",
        items.iter().map(|(_, n)| n).sum::<i64>(),
        esc(title),
        esc(&desc)
    );
    for (i, (label, n)) in items.iter().enumerate() {
        let y = 4.0 + ROW * i as f64;
        let width = (W - LABEL - 80.0) * *n as f64 / max as f64;
        let _ = write!(
            svg,
            "<g class=\"bar\" data-label=\"{}\" data-count=\"{n}\">\
             <text class=\"axis\" x=\"0\" y=\"{:.1}\">{}</text>\
             <rect class=\"bar-fill\" x=\"{LABEL}\" y=\"{y:.1}\" width=\"{width:.1}\" height=\"{:.1}\"/>\
             <text class=\"axis\" x=\"{:.1}\" y=\"{:.1}\">{}</text></g>",
            esc(label),
            y + ROW * 0.62,
            esc(label),
            ROW - 8.0,
            LABEL + width + 6.0,
            y + ROW * 0.62,
            angka(*n)
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(at: i64, d: i64, n: i64, p: i64) -> ProgressPoint {
        ProgressPoint {
            at,
            delivered: d,
            not_delivered: n,
            pending: p,
        }
    }

    #[test]
    fn progress_has_three_bands_and_says_its_numbers() {
        let svg = progress(
            &[
                point(0, 0, 0, 10),
                point(60_000, 4, 1, 5),
                point(120_000, 8, 2, 0),
            ],
            "08.00",
            "08.02",
        );
        assert_eq!(svg.matches("<path class=\"area").count(), 3, "{svg}");
        assert!(svg.contains("data-delivered=\"8\""), "{svg}");
        assert!(svg.contains("data-not-delivered=\"2\""), "{svg}");
        assert!(svg.contains("data-pending=\"0\""), "{svg}");
        assert!(svg.contains("8 diterima, 2 tidak sampai, 0 belum selesai, dari 10 pesan"));
        assert!(!svg.contains("style="), "the CSP allows no inline style");
        // The top band ends at the top of the plot when all are counted.
        assert!(svg.contains("M8.0,196.0 L300.0,98.0 L592.0,0.0"), "{svg}");
    }

    #[test]
    fn an_empty_campaign_says_so() {
        let svg = progress(&[], "—", "—");
        assert!(svg.contains("Belum ada hasil akhir"), "{svg}");
        assert!(!svg.contains("<path"), "{svg}");
    }

    #[test]
    fn bars_are_proportional_and_escaped() {
        let svg = bars(
            "grafik-alasan",
            "Tanda per alasan",
            &[("Tidak sampai".into(), 30), ("<Ditolak> & co".into(), 15)],
        );
        assert!(
            svg.contains("data-label=\"Tidak sampai\" data-count=\"30\""),
            "{svg}"
        );
        assert!(svg.contains("width=\"290.0\""), "{svg}");
        assert!(svg.contains("width=\"145.0\""), "{svg}");
        assert!(svg.contains("&lt;Ditolak&gt; &amp; co"), "{svg}");
        assert!(!svg.contains("<Ditolak>"), "{svg}");
        assert_eq!(angka(1_234_567), "1.234.567");
    }
}
