"""The Nexmark streaming suite (issue 6): q0, q1, q2, q5, q7 and q8 as watershed materialized
views (benches/nexmark.rs, one core), and q5's windowed aggregation in Spark Structured
Streaming (local[1]) over the same bids, written as Parquet by the watershed run. Writes its
table into benches/README.md between the nexmark-suite markers. Run through benches/nexmark.sh.
"""

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "lake"))
import run as lake  # noqa: E402  (shared helpers: machine, README update)

BEGIN, END = "<!-- nexmark-suite:begin -->", "<!-- nexmark-suite:end -->"
TARGETS = {"q0": 1.5e6, "q1": 1.5e6, "q2": 1.5e6, "q5": 220e3, "q7": 120e3, "q8": 1.4e6}


def spark_q5(parquet: Path, cores: int) -> tuple[int, float]:
    """Bids per auction per HOP(2 s, 10 s) window, append mode on the watermark, as a
    Structured Streaming query over the Parquet directory; one warm-up run, then the timed
    run. Returns (rows, seconds)."""
    from pyspark.sql import SparkSession, functions as F

    spark = (
        SparkSession.builder.master(f"local[{cores}]")
        .config("spark.sql.shuffle.partitions", str(cores))
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", "4g")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    batch = spark.read.parquet(str(parquet))
    rows = batch.count()

    def once() -> float:
        checkpoint = tempfile.mkdtemp(prefix="nexmark-spark-")
        try:
            stream = spark.readStream.schema(batch.schema).parquet(str(parquet))
            counts = (
                stream.withWatermark("date_time", "1 second")
                .groupBy(F.window("date_time", "10 seconds", "2 seconds"), "auction")
                .agg(F.count("*").alias("num"))
            )
            started = time.perf_counter()
            query = (
                counts.writeStream.outputMode("append")
                .format("noop")
                .option("checkpointLocation", checkpoint)
                .trigger(availableNow=True)
                .start()
            )
            query.awaitTermination()
            return time.perf_counter() - started
        finally:
            shutil.rmtree(checkpoint, ignore_errors=True)

    once()
    seconds = once()
    spark.stop()
    return rows, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", required=True, type=Path)
    parser.add_argument("--events", type=int, default=4_000_000)
    parser.add_argument("--command", required=True, help="the command line, for the report")
    args = parser.parse_args()

    parquet = args.cache / "nexmark-bids"
    shutil.rmtree(parquet, ignore_errors=True)
    cargo = ["cargo", "bench", "--features", "bench", "--bench", "nexmark", "--",
             "events", str(args.events), "parquet", str(parquet)]
    started_at = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    host = lake.machine()
    output = subprocess.run(cargo, check=True, capture_output=True, text=True).stdout
    table = [line for line in output.splitlines() if line.startswith("|")]
    print("\n".join(table))
    rates = {}
    for line in table[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if re.fullmatch(r"q\d+(-agg)?", cells[0]):
            rates[cells[0]] = (float(cells[4]), float(cells[5]))

    spark_rows, spark_s = spark_q5(parquet, cores=1)
    spark_rate = spark_rows / spark_s
    ours = rates["q5-agg"][0]

    lines = [
        f"Run {started_at} on {host}.",
        "",
        f"Command: `{args.command}` (runs `{' '.join(cargo[:6])} -- events {args.events} parquet DIR`, "
        "then Spark Structured Streaming on DIR).",
        "",
        *table,
        "",
        "| target | figure | target | ratio to target | met |",
        "|---|---|---|---|---|",
    ]
    for query, target in TARGETS.items():
        if query in rates:
            rows_rate, seq_rate = rates[query]
            lines.append(
                f"| {query}, sequence events/s per core | {seq_rate:,.0f} (rows/s {rows_rate:,.0f}) | "
                f"{target:,.0f} | {seq_rate / target:.2f} | {'yes' if seq_rate >= target else 'no'} |"
            )
    lines += [
        "",
        "| q5's windowed aggregation (bids per auction, HOP 2 s / 10 s), 1 core | bids/s | ratio |",
        "|---|---|---|",
        f"| watershed view (q5-agg) | {ours:,.0f} | {ours / spark_rate:.2f}x Spark |",
        f"| Spark Structured Streaming {spark_version()} local[1], append on watermark, availableNow, "
        f"second run | {spark_rate:,.0f} ({spark_rows} bids in {spark_s:.2f} s) | 1 |",
    ]
    report = "\n".join(lines)
    print(report)
    lake.update_readme(report, BEGIN, END)


def spark_version() -> str:
    import pyspark

    return pyspark.__version__


if __name__ == "__main__":
    main()
