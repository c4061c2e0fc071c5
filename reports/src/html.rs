//! `report.html`: one self-contained page per run (inline CSS and SVG, no scripts, no
//! network fetches), and a side-by-side page for `--target both` directories.
//!
//! Every string that comes from data goes through [`esc`].

use std::fmt::Write as _;

use crate::model::{Checks, Percentiles, Summary, Verdict};
use crate::plot::{fault_label, fmt_us, ChartOutput};
use crate::run::RunData;

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes a relative path for an `href`, refusing anything that could leave the results
/// directory tree for the network (`scheme:` or `//host`).
pub fn rel_href(path: &str) -> String {
    let p = path.replace('\\', "/");
    if p.contains(':') || p.starts_with("//") {
        return "#".to_string();
    }
    esc(&p)
}

const CSS: &str = r#"
:root{--fg:#1f2328;--muted:#57606a;--line:#d0d7de;--bg:#ffffff;--soft:#f6f8fa;
--ok:#1a7f37;--bad:#cf222e;--unk:#9a6700}
*{box-sizing:border-box}
body{margin:0;background:var(--soft);color:var(--fg);
font:15px/1.5 -apple-system,"Segoe UI",Helvetica,Arial,"DejaVu Sans",sans-serif}
main{max-width:1240px;margin:0 auto;padding:24px 28px 60px;background:var(--bg);
border-left:1px solid var(--line);border-right:1px solid var(--line);min-height:100vh}
header{display:flex;justify-content:space-between;align-items:flex-start;gap:24px;
border-bottom:1px solid var(--line);padding-bottom:16px;margin-bottom:8px}
h1{font-size:26px;margin:0 0 4px}
h2{font-size:19px;margin:34px 0 10px;padding-bottom:6px;border-bottom:1px solid var(--line)}
h3{font-size:16px;margin:18px 0 8px}
.sub{color:var(--muted)}
.verdict{font-size:30px;font-weight:700;letter-spacing:.06em;padding:10px 26px;
border-radius:10px;color:#fff;white-space:nowrap;text-align:center}
.verdict small{display:block;font-size:12px;font-weight:400;letter-spacing:0;opacity:.9}
.valid{background:var(--ok)}.invalid{background:var(--bad)}.unknown{background:var(--unk)}
.verdicts{display:flex;gap:12px}
table{border-collapse:collapse;margin:6px 0 10px;font-variant-numeric:tabular-nums}
th,td{border:1px solid var(--line);padding:5px 11px;text-align:right;vertical-align:top}
th{background:var(--soft);font-weight:600}
td.l,th.l{text-align:left}
tr.bad td{background:#ffebe9}
.pill{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;font-weight:600;color:#fff}
.pill.ok{background:var(--ok)}.pill.bad{background:var(--bad)}.pill.info{background:var(--muted)}
pre{background:#0d1117;color:#e6edf3;padding:12px 14px;border-radius:8px;overflow-x:auto;
font:13px/1.45 ui-monospace,"DejaVu Sans Mono",monospace;white-space:pre-wrap;word-break:break-all}
code{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:13px}
figure{margin:14px 0 26px}
figure svg{width:100%;height:auto;border:1px solid var(--line);border-radius:6px}
figcaption{color:var(--muted);font-size:13px}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:18px}
.kv{display:grid;grid-template-columns:max-content 1fr;gap:3px 18px}
.kv div:nth-child(odd){color:var(--muted)}
.timeline{position:relative;height:26px;background:var(--soft);border:1px solid var(--line);
border-radius:4px;margin:6px 0 14px}
.timeline span{position:absolute;top:3px;bottom:3px;border-radius:3px;opacity:.8}
.timeline .warm{background:#bbb;opacity:.5}
.cards{display:grid;grid-template-columns:repeat(5,1fr);gap:12px;margin:16px 0 4px}
.card{border:1px solid var(--line);border-radius:8px;padding:10px 14px;background:var(--soft)}
.card b{display:block;font-size:22px;font-variant-numeric:tabular-nums}
.card span{color:var(--muted);font-size:13px}
.card.bad{border-color:var(--bad);background:#ffebe9}
.warn{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:8px 12px}
ul.ex{margin:4px 0 12px;font-size:13px}
a{color:#0969da}
"#;

pub(crate) fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n",
        esc(title)
    )
}

fn verdict_word(v: Verdict) -> (&'static str, &'static str) {
    match v {
        Verdict::Valid => ("VALID", "valid"),
        Verdict::Invalid => ("INVALID", "invalid"),
        Verdict::Unknown => ("UNKNOWN", "unknown"),
    }
}

fn verdict_badge(v: Verdict, caption: &str) -> String {
    let (word, class) = verdict_word(v);
    format!(
        "<div class=\"verdict {class}\">{word}<small>{}</small></div>",
        esc(caption)
    )
}

/// `1234567` → `1,234,567`.
pub fn fmt_count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn fmt_rate(r: f64) -> String {
    if r >= 100.0 {
        format!("{}/s", fmt_count(r.round() as u64))
    } else {
        format!("{r:.1}/s")
    }
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn fmt_unix(t: u64) -> String {
    let days = (t / 86_400) as i64;
    let secs = t % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// One row of the checks table.
pub struct CheckRow {
    pub name: &'static str,
    pub count: u64,
    /// Whether a non-zero count is a correctness violation.
    pub violation: bool,
    /// A breakdown of the row above (lost mid-stream / tail), not counted twice.
    pub sub_count: bool,
    pub meaning: &'static str,
}

/// The checker's counts as table rows, violations first.
pub fn check_rows(c: &Checks) -> Vec<CheckRow> {
    let v = |name, count, meaning| CheckRow {
        name,
        count,
        violation: true,
        sub_count: false,
        meaning,
    };
    let sub = |name, count, meaning| CheckRow {
        name,
        count,
        violation: true,
        sub_count: true,
        meaning,
    };
    let i = |name, count, meaning| CheckRow {
        name,
        count,
        violation: false,
        sub_count: false,
        meaning,
    };
    let mut rows = vec![
        v("lost", c.lost, "acknowledged messages never delivered"),
        sub(
            "lost mid-stream",
            c.lost_mid_stream,
            "lost with later acknowledged messages on the channel",
        ),
        sub(
            "lost tail",
            c.lost_tail,
            "lost after the last surviving acknowledged message",
        ),
        v(
            "duplicated",
            c.duplicated,
            "a message delivered twice to one subscriber",
        ),
        v(
            "reordered",
            c.reordered,
            "a subscriber skipped back or subscribers disagree on order",
        ),
        v(
            "phantom",
            c.phantom,
            "delivered messages that were never published",
        ),
        v("corrupted", c.corrupted, "payload checksum mismatch"),
        v("diverged", c.diverged, "replicas whose final logs differ"),
        v(
            "real-time order",
            c.realtime_violations,
            "A acknowledged before B was sent, yet B precedes A",
        ),
        v(
            "failed but committed",
            c.failed_but_committed,
            "writes reported failed that were committed",
        ),
        i("acknowledged", c.acked, "publishes acknowledged"),
        i("failed", c.failed, "publishes that failed definitely"),
        i(
            "indeterminate",
            c.indeterminate,
            "publishes with unknown outcome (may appear at most once)",
        ),
        i("delivered", c.delivered, "deliveries over all subscribers"),
        i(
            "at-most-once gaps",
            c.at_most_once_gaps,
            "pub/sub messages missed while disconnected (not a violation)",
        ),
    ];
    if !c.queue.is_empty() {
        let q = &c.queue;
        rows.extend([
            i(
                "queue: taken",
                q.taken,
                "entries handed to consumers (XREADGROUP and claims), all groups",
            ),
            i(
                "queue: redelivered by claims",
                q.redelivered,
                "XAUTOCLAIM of what an idle or crashed consumer held (at least once, not a violation)",
            ),
            i(
                "queue: consumed",
                q.consumed,
                "entries an XACK removed from their group's PEL",
            ),
            i(
                "queue: consumer crashes",
                q.crashes,
                "consumers crashed holding entries (consumer-crash)",
            ),
        ]);
    }
    rows
}

fn checks_section(out: &mut String, s: &Summary) {
    let _ = writeln!(out, "<h2 id=\"checks\">Checks</h2>");
    let _ = writeln!(
        out,
        "<table><tr><th class=\"l\">check</th><th>count</th><th class=\"l\">status</th><th class=\"l\">meaning</th></tr>"
    );
    for r in check_rows(&s.checks) {
        let (class, pill) = match (r.violation, r.count) {
            (true, 0) => ("", "<span class=\"pill ok\">ok</span>"),
            (true, _) => (" class=\"bad\"", "<span class=\"pill bad\">violated</span>"),
            (false, _) => ("", "<span class=\"pill info\">info</span>"),
        };
        let _ = writeln!(
            out,
            "<tr{class}><td class=\"l\">{}</td><td>{}</td><td class=\"l\">{pill}</td><td class=\"l\">{}</td></tr>",
            r.name,
            fmt_count(r.count),
            r.meaning
        );
    }
    let _ = writeln!(out, "</table>");
    if !s.checks.promise.is_empty() {
        let _ = writeln!(
            out,
            "<p>Judged against the target's promise: <em>{}</em>.</p>",
            esc(&s.checks.promise)
        );
    }
    for why in &s.checks.unchecked {
        let _ = writeln!(
            out,
            "<p><span class=\"pill bad\">not checked</span> {}</p>",
            esc(why)
        );
    }
    for why in &s.checks.excused {
        let _ = writeln!(
            out,
            "<p><span class=\"pill info\">not read</span> {}</p>",
            esc(why)
        );
    }
    if s.checks.violations.is_empty() && s.checks.anomalies.is_empty() {
        let _ = writeln!(out, "<p>No anomalies found.</p>");
    }
    for a in &s.checks.anomalies {
        let _ = writeln!(
            out,
            "<h3>{} — {} <span class=\"pill\">{} within the promise</span></h3>",
            esc(&a.kind),
            esc(&a.property),
            fmt_count(a.count)
        );
        if !a.examples.is_empty() {
            let _ = writeln!(out, "<ul class=\"ex\">");
            for e in &a.examples {
                let _ = writeln!(out, "<li><code>{}</code></li>", esc(e));
            }
            let _ = writeln!(out, "</ul>");
        }
    }
    for v in &s.checks.violations {
        let _ = writeln!(
            out,
            "<h3>{} — {} <span class=\"pill bad\">{}</span></h3>",
            esc(&v.kind),
            esc(&v.property),
            fmt_count(v.count)
        );
        if !v.examples.is_empty() {
            let _ = writeln!(out, "<ul class=\"ex\">");
            for e in &v.examples {
                let _ = writeln!(out, "<li><code>{}</code></li>", esc(e));
            }
            let _ = writeln!(out, "</ul>");
        }
    }
}

/// Stale reads per node and per fault window; examples are with the violations or
/// anomalies (`stale_read`).
fn stale_reads_section(out: &mut String, s: &Summary) {
    let r = &s.checks.stale_reads;
    if r.is_empty() {
        return;
    }
    let _ = writeln!(out, "<h2 id=\"stale-reads\">Stale reads</h2>");
    let pill = match (r.stale, r.promised) {
        (0, _) => "<span class=\"pill ok\">none</span>",
        (_, true) => "<span class=\"pill bad\">violation</span>",
        (_, false) => "<span class=\"pill info\">anomaly within the promise</span>",
    };
    let _ = writeln!(
        out,
        "<p>{} reads, {} stale {pill}, {} failed (refused or unanswered, never stale), {} not judged. Reads promise: <em>{}</em>. A read is stale when it missed an entry acknowledged before it began; worst {} entries, {} behind.</p>",
        fmt_count(r.reads),
        fmt_count(r.stale),
        fmt_count(r.failed),
        fmt_count(r.unjudged),
        esc(&r.consistency),
        fmt_count(r.max_entries_behind),
        fmt_us(r.max_ms_behind * 1000.0)
    );
    let _ = writeln!(
        out,
        "<table><tr><th class=\"l\">node / fault window</th><th>reads</th><th>failed</th><th>stale</th><th>max entries behind</th><th>max behind</th></tr>"
    );
    for g in r.per_node.iter().chain(&r.per_window) {
        let class = if g.stale > 0 && r.promised {
            " class=\"bad\""
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "<tr{class}><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&g.label),
            fmt_count(g.reads),
            fmt_count(g.failed),
            fmt_count(g.stale),
            fmt_count(g.max_entries_behind),
            fmt_us(g.max_ms_behind * 1000.0)
        );
    }
    let _ = writeln!(out, "</table>");
}

fn pct_cells(p: &Percentiles) -> String {
    if p.count == 0 {
        return "<td>0</td><td colspan=\"6\" class=\"l\">no samples</td>".to_string();
    }
    format!(
        "<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
        fmt_count(p.count),
        fmt_us(p.p50 as f64),
        fmt_us(p.p90 as f64),
        fmt_us(p.p99 as f64),
        fmt_us(p.p999 as f64),
        fmt_us(p.max as f64)
    )
}

const PCT_HEAD: &str =
    "<th>count</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th>";

fn latency_section(out: &mut String, s: &Summary) {
    let _ = writeln!(out, "<h2 id=\"latency\">Latency</h2>");
    let _ = writeln!(
        out,
        "<p class=\"sub\">Measured from the intended send time (no coordinated omission), warmup excluded.</p>"
    );
    let _ = writeln!(out, "<table><tr><th class=\"l\">metric</th>{PCT_HEAD}</tr>");
    for (name, p) in [
        (
            "publish, every scheduled one (failures at their outcome)",
            &s.latency_us.publish_all,
        ),
        (
            "publish → ack (acknowledged only)",
            &s.latency_us.publish_ack,
        ),
        ("publish → deliver", &s.latency_us.end_to_end),
        ("send lag (generator)", &s.latency_us.send_lag),
    ] {
        let _ = writeln!(out, "<tr><td class=\"l\">{name}</td>{}</tr>", pct_cells(p));
    }
    if s.latency_us.consumed.count > 0 {
        let _ = writeln!(
            out,
            "<tr><td class=\"l\">publish → XACK (queue: finished by a group)</td>{}</tr>",
            pct_cells(&s.latency_us.consumed)
        );
    }
    if s.latency_us.read.count > 0 {
        let _ = writeln!(
            out,
            "<tr><td class=\"l\">read (XRANGE/XREVRANGE/XLEN, send → reply)</td>{}</tr>",
            pct_cells(&s.latency_us.read)
        );
    }
    let _ = writeln!(out, "</table>");
    if s.latency_us.publish_censored > 0 {
        let _ = writeln!(
            out,
            "<p class=\"sub\">{} scheduled publishes timed out or were never answered: they enter the first row at the time the client gave up, a lower bound on their latency.</p>",
            fmt_count(s.latency_us.publish_censored)
        );
    }
    let lag = &s.latency_us.send_lag;
    if lag.count > 0 && lag.p99 > 10_000 {
        let _ = writeln!(
            out,
            "<p class=\"warn\">The load generator fell behind its schedule (send lag p99 {}): part of the latency above may come from the generator, not the target.{}</p>",
            fmt_us(lag.p99 as f64),
            s.generator
                .as_ref()
                .map(|g| format!(" Why: {}.", esc(&g.why_behind())))
                .unwrap_or_default()
        );
    }
    if let Some(g) = &s.generator {
        let _ = writeln!(
            out,
            "<p class=\"sub\">Load generator over the measured window: {}.</p>",
            esc(&g.describe())
        );
    }
}

fn throughput_section(out: &mut String, s: &Summary) {
    let t = &s.throughput;
    let ratio = if t.offered_per_s > 0.0 {
        format!("{:.1}%", 100.0 * t.achieved_per_s / t.offered_per_s)
    } else {
        "n/a".to_string()
    };
    let _ = writeln!(out, "<h2 id=\"throughput\">Throughput</h2>");
    let _ = writeln!(
        out,
        "<table><tr><th class=\"l\">offered</th><th class=\"l\">achieved</th><th class=\"l\">achieved / offered</th>\
         <th>acknowledged</th><th>failed</th><th>indeterminate</th><th>delivered</th></tr>\
         <tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{ratio}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table>",
        fmt_rate(t.offered_per_s),
        fmt_rate(t.achieved_per_s),
        fmt_count(s.checks.acked),
        fmt_count(s.checks.failed),
        fmt_count(s.checks.indeterminate),
        fmt_count(s.checks.delivered)
    );
}

fn workload_section(out: &mut String, s: &Summary) {
    let w = &s.workload;
    let _ = writeln!(out, "<h2 id=\"workload\">Workload</h2><div class=\"kv\">");
    let target = if s.target_detail.is_empty() {
        crate::run::target_name(s.target).to_string()
    } else {
        format!(
            "{} ({})",
            crate::run::target_name(s.target),
            s.target_detail
        )
    };
    let mode = match w.mode {
        crate::model::Mode::Stream => "stream (XADD + XREAD, resume by ID)",
        crate::model::Mode::Pubsub => "pub/sub (PUBLISH + SUBSCRIBE)",
        crate::model::Mode::Queue => "queue (XADD + consumer groups: XREADGROUP, XACK, XAUTOCLAIM)",
    };
    for (k, v) in [
        ("target", esc(&target)),
        ("nodes", w.nodes.to_string()),
        ("mode", mode.to_string()),
        ("offered rate", fmt_rate(w.rate)),
        (
            "duration",
            format!("{}s (warmup {}s)", w.duration_s, w.warmup_s),
        ),
        ("payload", format!("{} bytes", w.size)),
        ("channels", w.channels.to_string()),
        ("publishers", w.publishers.to_string()),
        ("subscribers per node", w.subscribers_per_node.to_string()),
    ] {
        let _ = writeln!(out, "<div>{k}</div><div>{v}</div>");
    }
    let _ = writeln!(out, "</div>");
}

fn charts_section(out: &mut String, charts: &[ChartOutput]) {
    let _ = writeln!(out, "<h2 id=\"charts\">Charts</h2>");
    if charts.is_empty() {
        let _ = writeln!(
            out,
            "<p>No charts: the run has no per-second or histogram data.</p>"
        );
    }
    for c in charts {
        let png = c
            .png
            .file_name()
            .map(|f| f.to_string_lossy().to_string())
            .unwrap_or_default();
        let svg = c
            .svg
            .file_name()
            .map(|f| f.to_string_lossy().to_string())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "<figure>{}<figcaption>{} — <a href=\"{}\">PNG</a> · <a href=\"{}\">SVG</a></figcaption></figure>",
            inline_svg(&c.svg_text),
            esc(&c.title),
            rel_href(&png),
            rel_href(&svg)
        );
    }
}

/// Makes a plotters SVG document fit for inlining: no XML namespace URL (HTML parsers do
/// not need it), scaled by CSS.
pub fn inline_svg(svg: &str) -> String {
    svg.replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1)
}

fn faults_section(out: &mut String, s: &Summary, palette: &crate::plot::Palette) {
    let _ = writeln!(out, "<h2 id=\"faults\">Faults</h2>");
    if s.faults.is_empty() {
        let _ = writeln!(out, "<p>No faults were injected.</p>");
        return;
    }
    let end = s
        .faults
        .iter()
        .map(|f| f.end_s)
        .fold(s.workload.duration_s + s.workload.warmup_s, f64::max)
        .max(1.0);
    let _ = write!(out, "<div class=\"timeline\" title=\"fault timeline\">");
    if s.workload.warmup_s > 0.0 {
        let _ = write!(
            out,
            "<span class=\"warm\" style=\"left:0%;width:{:.2}%\"></span>",
            100.0 * s.workload.warmup_s / end
        );
    }
    for f in &s.faults {
        let c = palette.fault(&f.kind);
        let _ = write!(
            out,
            "<span style=\"left:{:.2}%;width:{:.2}%;background:#{:02x}{:02x}{:02x}\" title=\"{}\"></span>",
            100.0 * f.start_s / end,
            (100.0 * (f.end_s - f.start_s) / end).max(0.3),
            c.0,
            c.1,
            c.2,
            esc(&fault_label(f))
        );
    }
    let _ = writeln!(out, "</div>");
    let _ = writeln!(
        out,
        "<table><tr><th>#</th><th class=\"l\">kind</th><th class=\"l\">detail</th><th class=\"l\">targets</th><th>start</th><th>end</th><th>duration</th></tr>"
    );
    for (i, f) in s.faults.iter().enumerate() {
        let c = palette.fault(&f.kind);
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"l\"><span class=\"pill\" style=\"background:#{:02x}{:02x}{:02x}\">{}</span></td>\
             <td class=\"l\">{}</td><td class=\"l\">{}</td><td>{:.1}s</td><td>{:.1}s</td><td>{:.1}s</td></tr>",
            i + 1,
            c.0,
            c.1,
            c.2,
            esc(&f.kind),
            esc(&f.detail),
            esc(&f.targets.join(", ")),
            f.start_s,
            f.end_s,
            f.end_s - f.start_s
        );
    }
    let _ = writeln!(out, "</table>");
}

fn recovery_section(out: &mut String, s: &Summary) {
    let _ = writeln!(out, "<h2 id=\"recovery\">Recovery</h2>");
    if s.recovery.is_empty() {
        let _ = writeln!(out, "<p>No recoveries to measure.</p>");
        return;
    }
    let _ = writeln!(
        out,
        "<table><tr><th class=\"l\">fault</th><th>started at</th><th>first ack after start</th><th>availability</th><th>unavailable</th><th>healed at</th><th>first successful publish after</th><th>acked lost</th></tr>"
    );
    for r in &s.recovery {
        let (class, after) = match r.first_ok_after_s {
            Some(a) => ("", format!("{a:.2}s")),
            None => (" class=\"bad\"", "never".to_string()),
        };
        let resume = r
            .first_ok_after_start_s
            .map_or("never".to_string(), |a| format!("{a:.2}s"));
        let avail = r
            .availability
            .map_or("–".to_string(), |a| format!("{:.0}%", a * 100.0));
        let _ = writeln!(
            out,
            "<tr{class}><td class=\"l\">{}</td><td>{:.1}s</td><td>{resume}</td><td>{avail}</td><td>{:.1}s</td><td>{:.1}s</td><td>{after}</td><td>{}</td></tr>",
            esc(&r.kind),
            r.started_at_s,
            r.unavailable_s,
            r.healed_at_s,
            r.lost
        );
    }
    let _ = writeln!(out, "</table>");
}

fn environment_section(out: &mut String, run: &RunData) {
    let e = &run.summary.environment;
    let _ = writeln!(
        out,
        "<h2 id=\"environment\">Environment</h2><div class=\"kv\">"
    );
    for (k, v) in [
        ("network", e.network.as_str()),
        ("kernel", e.kernel.as_str()),
        ("hostname", e.hostname.as_str()),
        ("harness", e.harness_version.as_str()),
        ("target version", e.target_version.as_str()),
    ] {
        let _ = writeln!(out, "<div>{k}</div><div>{}</div>", esc(v));
    }
    let _ = writeln!(out, "<div>cpus</div><div>{}</div>", e.cpus);
    let _ = writeln!(
        out,
        "<div>results</div><div><code>{}</code></div></div>",
        esc(&run.dir.display().to_string())
    );
    if !e.notes.is_empty() {
        let _ = writeln!(out, "<h3>Notes</h3><ul>");
        for n in &e.notes {
            let _ = writeln!(out, "<li>{}</li>", esc(n));
        }
        let _ = writeln!(out, "</ul>");
    }
}

fn warnings_block(out: &mut String, warnings: &[String]) {
    if warnings.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "<div class=\"warn\"><strong>Incomplete data:</strong><ul>"
    );
    for w in warnings {
        let _ = writeln!(out, "<li>{}</li>", esc(w));
    }
    let _ = writeln!(out, "</ul></div>");
}

/// The few numbers a reader wants first, as cards under the title.
fn key_numbers(out: &mut String, s: &Summary) {
    let violations: u64 = check_rows(&s.checks)
        .iter()
        .filter(|r| r.violation && !r.sub_count)
        .map(|r| r.count)
        .sum();
    let slowest_recovery = s
        .recovery
        .iter()
        .map(|r| r.first_ok_after_s)
        .try_fold(0.0f64, |acc, r| r.map(|v| acc.max(v)));
    let recovery = match (s.recovery.is_empty(), slowest_recovery) {
        (true, _) => "–".to_string(),
        (false, Some(v)) => format!("{v:.2}s"),
        (false, None) => "never".to_string(),
    };
    let cards = [
        (
            fmt_us(s.latency_us.publish_ack.p99 as f64),
            "publish → ack p99",
            false,
        ),
        (
            fmt_us(s.latency_us.end_to_end.p99 as f64),
            "publish → deliver p99",
            false,
        ),
        (
            fmt_rate(s.throughput.achieved_per_s),
            "achieved throughput",
            false,
        ),
        (fmt_count(violations), "violations", violations > 0),
        (
            recovery,
            "slowest recovery after heal",
            slowest_recovery.is_none(),
        ),
    ];
    let _ = write!(out, "<div class=\"cards\">");
    for (value, label, bad) in cards {
        let _ = write!(
            out,
            "<div class=\"card{}\"><b>{}</b><span>{label}</span></div>",
            if bad { " bad" } else { "" },
            esc(&value)
        );
    }
    let _ = writeln!(out, "</div>");
}

/// The report of one run.
pub fn run_page(run: &RunData, charts: &[ChartOutput]) -> String {
    let s = &run.summary;
    let palette = crate::plot::Palette::default();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<header><div><h1>raftbus report — {}</h1><div class=\"sub\">target <strong>{}</strong> · seed <code>{}</code> · started {} · {} fault window(s)</div></div>{}</header>",
        esc(&s.name),
        esc(&run.label()),
        s.seed,
        fmt_unix(s.started_at),
        s.faults.len(),
        verdict_badge(s.verdict, "verdict")
    );
    key_numbers(&mut out, s);
    warnings_block(&mut out, &run.warnings);
    let _ = writeln!(out, "<h2 id=\"verdict\">Verdict</h2>");
    let violated: Vec<String> = s
        .checks
        .violations
        .iter()
        .map(|v| format!("{} ({})", v.kind, v.count))
        .collect();
    let text = match s.verdict {
        Verdict::Valid => "Every check held.".to_string(),
        Verdict::Invalid if violated.is_empty() => {
            "At least one correctness check failed.".to_string()
        }
        Verdict::Invalid => format!("Violated: {}.", violated.join(", ")),
        Verdict::Unknown => "The run could not be fully checked.".to_string(),
    };
    let _ = writeln!(out, "<p>{}</p>", esc(&text));
    let _ = writeln!(
        out,
        "<h2 id=\"rerun\">Rerun</h2><pre><code>{}</code></pre>",
        esc(&s.rerun)
    );
    workload_section(&mut out, s);
    checks_section(&mut out, s);
    stale_reads_section(&mut out, s);
    latency_section(&mut out, s);
    throughput_section(&mut out, s);
    out.push_str(&crate::cost::html(&[s]));
    charts_section(&mut out, charts);
    faults_section(&mut out, s, &palette);
    recovery_section(&mut out, s);
    environment_section(&mut out, run);
    page(&format!("raftbus — {} — {}", s.name, run.label()), &out)
}

/// The side-by-side report of a `--target both` directory. `links` are relative paths to
/// each run's own report, in the order of `runs`.
pub fn comparison_page(
    runs: &[RunData],
    links: &[String],
    charts: &[ChartOutput],
    per_run: &[Vec<ChartOutput>],
) -> String {
    let mut out = String::new();
    let name = runs
        .first()
        .map(|r| r.summary.name.clone())
        .unwrap_or_default();
    let labels: Vec<String> = runs.iter().map(RunData::label).collect();
    let badges: String = runs
        .iter()
        .map(|r| verdict_badge(r.summary.verdict, &r.label()))
        .collect();
    let seeds: Vec<String> = runs.iter().map(|r| r.summary.seed.to_string()).collect();
    let _ = writeln!(
        out,
        "<header><div><h1>raftbus comparison — {}</h1><div class=\"sub\">{} · seed <code>{}</code> · started {}</div></div><div class=\"verdicts\">{badges}</div></header>",
        esc(&name),
        esc(&labels.join(" vs ")),
        esc(&seeds.join(", ")),
        runs.first().map(|r| fmt_unix(r.summary.started_at)).unwrap_or_default()
    );
    for r in runs {
        warnings_block(&mut out, &r.warnings);
    }

    let _ = writeln!(out, "<h2 id=\"verdict\">Verdict</h2><table><tr><th class=\"l\">target</th><th class=\"l\">verdict</th><th class=\"l\">violations</th><th class=\"l\">report</th></tr>");
    for (r, link) in runs.iter().zip(links) {
        let (word, class) = verdict_word(r.summary.verdict);
        let v: Vec<String> = r
            .summary
            .checks
            .violations
            .iter()
            .map(|v| format!("{} ({})", v.kind, v.count))
            .collect();
        let _ = writeln!(
            out,
            "<tr><td class=\"l\">{}</td><td class=\"l\"><span class=\"pill {}\">{word}</span></td><td class=\"l\">{}</td><td class=\"l\"><a href=\"{}\">{}</a></td></tr>",
            esc(&r.label()),
            if class == "valid" { "ok" } else { "bad" },
            esc(&if v.is_empty() { "none".to_string() } else { v.join(", ") }),
            rel_href(link),
            esc(link)
        );
    }
    let _ = writeln!(out, "</table>");
    let summaries: Vec<&Summary> = runs.iter().map(|r| &r.summary).collect();
    out.push_str(&crate::durability::html(&crate::durability::rows(
        &summaries,
    )));

    let _ = writeln!(out, "<h2 id=\"rerun\">Rerun</h2>");
    for r in runs {
        let _ = writeln!(
            out,
            "<h3>{}</h3><pre><code>{}</code></pre>",
            esc(&r.label()),
            esc(&r.summary.rerun)
        );
    }

    let _ = writeln!(out, "<h2 id=\"latency\">Latency</h2><table><tr><th class=\"l\">target</th><th class=\"l\">metric</th>{PCT_HEAD}</tr>");
    for r in runs {
        for (m, p) in [
            ("publish → ack", &r.summary.latency_us.publish_ack),
            ("publish → deliver", &r.summary.latency_us.end_to_end),
        ] {
            let _ = writeln!(
                out,
                "<tr><td class=\"l\">{}</td><td class=\"l\">{m}</td>{}</tr>",
                esc(&r.label()),
                pct_cells(p)
            );
        }
    }
    let _ = writeln!(out, "</table>");

    let _ = writeln!(out, "<h2 id=\"throughput\">Throughput</h2><table><tr><th class=\"l\">target</th><th>offered</th><th>achieved</th><th>acknowledged</th><th>failed</th><th>indeterminate</th></tr>");
    for r in runs {
        let s = &r.summary;
        let _ = writeln!(
            out,
            "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&r.label()),
            fmt_rate(s.throughput.offered_per_s),
            fmt_rate(s.throughput.achieved_per_s),
            fmt_count(s.checks.acked),
            fmt_count(s.checks.failed),
            fmt_count(s.checks.indeterminate)
        );
    }
    let _ = writeln!(out, "</table>");
    out.push_str(&crate::cost::html(&summaries));

    let _ = writeln!(
        out,
        "<h2 id=\"checks\">Checks</h2><table><tr><th class=\"l\">check</th>"
    );
    for r in runs {
        let _ = write!(out, "<th>{}</th>", esc(&r.label()));
    }
    let _ = writeln!(out, "</tr>");
    let rows: Vec<Vec<CheckRow>> = runs.iter().map(|r| check_rows(&r.summary.checks)).collect();
    if let Some(first) = rows.first() {
        for (i, row) in first.iter().enumerate() {
            // Runs may have different rows (queue figures exist in queue mode only).
            let count =
                |r: &Vec<CheckRow>| r.get(i).filter(|c| c.name == row.name).map(|c| c.count);
            let bad = row.violation && rows.iter().any(|r| count(r).unwrap_or(0) > 0);
            let _ = write!(
                out,
                "<tr{}><td class=\"l\">{}</td>",
                if bad { " class=\"bad\"" } else { "" },
                row.name
            );
            for r in &rows {
                let cell = count(r).map_or_else(|| "–".to_string(), fmt_count);
                let _ = write!(out, "<td>{cell}</td>");
            }
            let _ = writeln!(out, "</tr>");
        }
    }
    let _ = writeln!(out, "</table>");

    charts_section(&mut out, charts);
    if !per_run.is_empty() {
        let _ = writeln!(
            out,
            "<h3>Latency over time, side by side</h3><div class=\"grid2\">"
        );
        for (r, cs) in runs.iter().zip(per_run) {
            if let Some(c) = cs.iter().find(|c| c.stem == "latency_over_time") {
                let _ = writeln!(
                    out,
                    "<figure>{}<figcaption>{}</figcaption></figure>",
                    inline_svg(&c.svg_text),
                    esc(&r.label())
                );
            }
        }
        let _ = writeln!(out, "</div>");
    }

    let palette = crate::plot::Palette::default();
    for r in runs {
        let _ = writeln!(
            out,
            "<h2 id=\"faults-{}\">Faults — {}</h2>",
            crate::run::target_name(r.summary.target),
            esc(&r.label())
        );
        let mut inner = String::new();
        faults_section(&mut inner, &r.summary, &palette);
        recovery_section(&mut inner, &r.summary);
        // Drop the inner headings, the outer one names the target.
        let inner = inner
            .replace("<h2 id=\"faults\">Faults</h2>", "")
            .replace("<h2 id=\"recovery\">Recovery</h2>", "<h3>Recovery</h3>");
        out.push_str(&inner);
    }
    if let Some(r) = runs.first() {
        environment_section(&mut out, r);
    }
    page(&format!("raftbus — {name} — {}", labels.join(" vs ")), &out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(esc("<script>&\"'"), "&lt;script&gt;&amp;&quot;&#39;");
    }

    #[test]
    fn hrefs_stay_local() {
        assert_eq!(rel_href("bus/report.html"), "bus/report.html");
        assert_eq!(rel_href("https://evil.example/x"), "#");
        assert_eq!(rel_href("//evil.example/x"), "#");
        assert_eq!(rel_href("javascript:alert(1)"), "#");
    }

    #[test]
    fn formats_numbers_and_dates() {
        assert_eq!(fmt_count(1_234_567), "1,234,567");
        assert_eq!(fmt_count(12), "12");
        assert_eq!(fmt_unix(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(fmt_unix(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(fmt_unix(951_782_400), "2000-02-29 00:00:00 UTC");
    }
}
