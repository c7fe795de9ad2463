"""The benchmark's table, ratios and targets, printed as text and written as a Markdown page."""

from dataclasses import dataclass

from .figures import format_number

# Earlier figures measured on the same kind of 2-core machine, not by this script.
# They are shown beside this run's figures, which are the ones compared.
EARLIER_FIGURES = {
    "rq.enqueue_one": 2_500,
    "rq.enqueue_many": 12_400,
    "rq.worker": 80,
    "rq.simple1": 300,
    "rq.simple2": 515,
    "bullmq.add": 6_000,
    "bullmq.add_bulk": 27_500,
    "bullmq.c1": 4_100,
    "bullmq.c10": 14_000,
    "bullmq.c50": 19_000,
}
# The earlier TypeScript version of the plugin: jobs per second at concurrency 5 with history.
TYPESCRIPT_PLUGIN_C5 = 880

SECTIONS = (
    ("Plugin: enqueue", ("plugin.enqueue_one", "plugin.enqueue_many", "plugin.http_idle.rate",
                         "plugin.http_idle.p50", "plugin.http_idle.p99", "plugin.http_busy.rate",
                         "plugin.http_busy.p50", "plugin.http_busy.p99")),
    ("Plugin: processing no-op jobs", ("plugin.c1", "plugin.c2", "plugin.c4", "plugin.c5", "plugin.c8",
                                       "plugin.c5.with_history", "plugin.c5.history_off",
                                       "plugin.history_drain")),
    ("Plugin: history, latency and memory", ("plugin.lag.p99", "plugin.lag.max", "plugin.db_round_trips",
                                             "plugin.db_transactions", "plugin.batch_events",
                                             "plugin.start.p50", "plugin.start.p99",
                                             "plugin.memory.rss", "plugin.memory.pss")),
    ("Plain RQ", ("rq.enqueue_one", "rq.enqueue_many", "rq.worker", "rq.pool2", "rq.simple1", "rq.simple2",
                  "rq.simple4")),
    ("BullMQ", ("bullmq.add", "bullmq.add_bulk", "bullmq.c1", "bullmq.c10", "bullmq.c50")),
    ("CPU time per job, all processes of the run (less affected by other load)",
     ("cpu.plugin.c1", "cpu.plugin.c2", "cpu.plugin.c4", "cpu.plugin.c5", "cpu.plugin.c8",
      "cpu.plugin.c5.history_off", "cpu.rq.worker", "cpu.rq.pool2", "cpu.rq.simple1", "cpu.rq.simple2",
      "cpu.rq.simple4")),
)

RATIOS = (
    ("Plugin -c 5 / RQ SimpleWorker, 4 processes", "plugin.c5", "rq.simple4"),
    ("Plugin -c 1 / RQ SimpleWorker, 1 process", "plugin.c1", "rq.simple1"),
    ("Plugin -c 2 / RQ SimpleWorker, 2 processes", "plugin.c2", "rq.simple2"),
    ("Plugin -c 4 / RQ SimpleWorker, 4 processes", "plugin.c4", "rq.simple4"),
    ("Plugin -c 5 / BullMQ concurrency 10", "plugin.c5", "bullmq.c10"),
    ("Plugin -c 5 / TypeScript plugin at concurrency 5 (880 jobs/s)", "plugin.c5", None),
    ("Plugin enqueue / RQ enqueue", "plugin.enqueue_one", "rq.enqueue_one"),
    ("Plugin enqueue_many / RQ enqueue_many", "plugin.enqueue_many", "rq.enqueue_many"),
    ("Plugin enqueue / BullMQ add", "plugin.enqueue_one", "bullmq.add"),
    ("Plugin enqueue_many / BullMQ addBulk", "plugin.enqueue_many", "bullmq.add_bulk"),
)


@dataclass
class Target:
    """One performance target: its goal, the measured value as text, and whether it is met (None: not measured)."""

    goal: str
    measured: str
    met: bool | None


def _ratio(figures, numerator, denominator):
    top = figures.median(numerator)
    bottom = TYPESCRIPT_PLUGIN_C5 if denominator is None else figures.median(denominator)
    if top is None or not bottom:
        return None
    return top / bottom


def table_rows(figures):
    """Return ``(section, rows)`` pairs; a row is (figure, median, min-max, unit, other CPU, earlier figure).

    "Other CPU" is the median share of all cores that other processes used during the figure's rounds.
    """
    result = []
    for title, keys in SECTIONS:
        rows = []
        for key in keys:
            figure = figures.get(key)
            if figure is None:
                continue
            earlier = EARLIER_FIGURES.get(key)
            earlier_text = format_number(earlier) if earlier else ""
            if not figure.measured:
                rows.append((figure.label, "not run", figures.skipped.get(key, ""), figure.unit, "", earlier_text))
                continue
            spread = (f"{format_number(figure.low, figure.unit)}-{format_number(figure.high, figure.unit)}"
                      if len(figure.values) > 1 else "one value")
            others = "" if figure.others_median is None else f"{figure.others_median:.0%}"
            rows.append((figure.label, format_number(figure.median, figure.unit), spread, figure.unit, others,
                         earlier_text))
        if rows:
            result.append((title, rows))
    return result


def ratio_rows(figures):
    """Return ``(comparison, ratio text)`` rows from this run's medians."""
    rows = []
    for label, numerator, denominator in RATIOS:
        value = _ratio(figures, numerator, denominator)
        rows.append((label, "n/a" if value is None else f"{value:.2f}x"))
    return rows


def _check(value, limit, below):
    if value is None:
        return None
    return value < limit if below else value >= limit


def targets(figures):
    """Evaluate the performance targets against this run's medians."""
    c5 = figures.median("plugin.c5")
    c5_off = figures.median("plugin.c5.history_off")
    bullmq_c10 = figures.median("bullmq.c10")
    add_bulk = figures.median("bullmq.add_bulk")
    enqueue_many = figures.median("plugin.enqueue_many")
    http_rate = figures.median("plugin.http_busy.rate")
    http_p99 = figures.median("plugin.http_busy.p99")
    lag_p99 = figures.median("plugin.lag.p99")
    round_trips = figures.median("plugin.db_round_trips")
    start_p99 = figures.median("plugin.start.p99")
    rss = figures.median("plugin.memory.rss")
    history_cost = 1 - c5 / c5_off if c5 and c5_off else None
    cpu_on = figures.median("cpu.plugin.c5")
    cpu_off = figures.median("cpu.plugin.c5.history_off")
    cpu_cost = 1 - cpu_off / cpu_on if cpu_on and cpu_off else None

    def text(value, unit, digits=0):
        return "not measured" if value is None else f"{value:,.{digits}f} {unit}".strip()

    def busy(*keys):
        """Return a note on other processes' CPU share during the figures, when it was above 10%."""
        shares = [figures.get(key).others_median for key in keys
                  if figures.get(key) is not None and figures.get(key).others_median is not None]
        return f" (other CPU up to {max(shares):.0%})" if shares and max(shares) > 0.10 else ""

    # Both measures must pass: jobs/s alone can mislead when other load hit some rounds more than others.
    history_cost_met = _check(history_cost, 0.10, below=True)
    if history_cost_met is not None and cpu_cost is not None:
        history_cost_met = history_cost_met and cpu_cost < 0.10
    cost_text = "not measured" if history_cost is None else f"{history_cost:.1%} of jobs/s"
    if cpu_cost is not None:
        cost_text += f"; {cpu_cost:.1%} of CPU time per job"
    return [
        Target("Processing at -c 5 with history: >= 3 x 880 = 2,640 jobs/s",
               text(c5, "jobs/s") + busy("plugin.c5"), _check(c5, 3 * TYPESCRIPT_PLUGIN_C5, below=False)),
        Target("Processing at -c 5 with history: >= half of BullMQ at concurrency 10 (aim)",
               text(c5, "jobs/s") + (f" vs {0.5 * bullmq_c10:,.0f}" if bullmq_c10 else "")
               + busy("plugin.c5", "bullmq.c10"),
               _check(c5, 0.5 * bullmq_c10, below=False) if c5 and bullmq_c10 else None),
        Target("History costs < 10% of throughput at -c 5 (writer on vs held off)",
               cost_text + busy("plugin.c5", "plugin.c5.history_off"), history_cost_met),
        Target("History lag p99 < 250 ms at maximum load (-c 5)", text(lag_p99, "ms") + busy("plugin.lag.p99"),
               _check(lag_p99, 250, below=True)),
        Target("< 0.05 PostgreSQL round trips per job under load", text(round_trips, "", 4),
               _check(round_trips, 0.05, below=True)),
        Target("Bulk enqueue >= 0.5 x BullMQ addBulk",
               text(enqueue_many, "jobs/s") + (f" vs {0.5 * add_bulk:,.0f}" if add_bulk else "")
               + busy("plugin.enqueue_many", "bullmq.add_bulk"),
               _check(enqueue_many, 0.5 * add_bulk, below=False) if enqueue_many and add_bulk else None),
        Target("POST /api/jobs >= 1,500 req/s with a worker running",
               text(http_rate, "req/s") + busy("plugin.http_busy.rate"), _check(http_rate, 1500, below=False)),
        Target("POST /api/jobs p99 < 30 ms with a worker running",
               text(http_p99, "ms", 1) + busy("plugin.http_busy.p99"), _check(http_p99, 30, below=True)),
        Target("Enqueue-to-start p99 < 20 ms at light load", text(start_p99, "ms", 1) + busy("plugin.start.p99"),
               _check(start_p99, 20, below=True)),
        Target("Worker command at -c 5 < 200 MB total RSS",
               "not measured" if rss is None else f"{rss * 1.048576:,.0f} MB ({rss:,.0f} MiB)",
               _check(rss, 200 * 1_000_000 / 1_048_576, below=True)),
    ]


def _verdict(met):
    return {True: "met", False: "MISSED", None: "not measured"}[met]


def render_text(figures):
    """Return the run's table, ratios and targets as fixed-width text."""
    header = ("Figure", "Median", "Spread (min-max)", "Unit", "Other CPU", "Earlier")
    lines = []
    for title, rows in table_rows(figures):
        widths = [max(len(str(row[i])) for row in rows + [header]) for i in range(len(header))]
        lines.append("")
        lines.append(title)
        lines.append("  " + "  ".join(str(cell).ljust(widths[i]) if i == 0 else str(cell).rjust(widths[i])
                                      for i, cell in enumerate(header)))
        for row in rows:
            lines.append("  " + "  ".join(str(cell).ljust(widths[i]) if i == 0 else str(cell).rjust(widths[i])
                                          for i, cell in enumerate(row)))
    lines.append("")
    lines.append("Ratios of medians")
    ratios = ratio_rows(figures)
    width = max(len(label) for label, _ in ratios)
    lines += [f"  {label.ljust(width)}  {value:>7}" for label, value in ratios]
    lines.append("")
    lines.append("Targets")
    for target in targets(figures):
        lines.append(f"  [{_verdict(target.met):>12}] {target.goal}: {target.measured}")
    return "\n".join(lines)


def _markdown_cell(text):
    return str(text).replace("|", "\\|")


def render_markdown_table(figures):
    lines = []
    for title, rows in table_rows(figures):
        lines += ["", f"### {title}", "", "| Figure | Median | Spread (min-max) | Unit | Other CPU | Earlier |",
                  "|---|---:|---:|---|---:|---:|"]
        lines += ["| " + " | ".join(_markdown_cell(cell) for cell in row) + " |" for row in rows]
    lines += ["", "### Ratios of medians", "", "| Comparison | Ratio |", "|---|---:|"]
    lines += [f"| {_markdown_cell(label)} | {value} |" for label, value in ratio_rows(figures)]
    return "\n".join(lines)


def render_markdown_targets(figures):
    lines = ["| Target | Measured | Result |", "|---|---|---|"]
    for target in targets(figures):
        lines.append(f"| {_markdown_cell(target.goal)} | {_markdown_cell(target.measured)} | {_verdict(target.met)} |")
    return "\n".join(lines)
