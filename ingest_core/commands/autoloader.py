"""`ingest autoloader CONFIG`: how Spark reads a topic's lake.

Prints a ready Databricks Auto Loader snippet and the equivalent open-source Spark
Structured Streaming reader. The open-source reader is the code of `spark_reader()`;
`SparkReader.open(spark)` runs that very code, which is how the tests read the lake,
so the printed reader and the tested one cannot drift apart.

What the layout gives a reader: Hive-style `name=value` folders of `partition_by`
become partition columns; data files are `{topic}+{partition}+{offset:020d}{ext}`;
everything internal or temporary starts with `_` or `.`, which Spark's file source
skips (and `pathGlobFilter` narrows reads to data files on top of that).
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ingest_core.config import ConfigError, load_checked_settings
from ingest_core.settings import Settings
from ingest_core.sink.formats import FORMATS
from ingest_core.sink.paths import PartitionTemplate
from ingest_core.sink.stores import store_for

METADATA_COLUMNS = (
    ("_topic", "STRING"),
    ("_partition", "INT"),
    ("_offset", "BIGINT"),
    ("_timestamp", "TIMESTAMP"),
    ("_key", "STRING"),
)
# Kafka headers, when output.metadata lists _headers. BINARY also reads NDJSON's base64 text.
HEADERS_DDL = ("_headers", "ARRAY<STRUCT<key: STRING, value: BINARY>>")
# strftime formats whose output Spark's partition inference reads as a number (it infers "09" as 9).
_NUMERIC_DIRECTIVES = re.compile(r"(%[YmdHMSjyU])+")


@dataclass(frozen=True)
class PartitionColumn:
    name: str
    type: str  # Spark SQL type, what Spark's partition inference gives for these folder values


def partition_columns(partition_by: str) -> list[PartitionColumn]:
    """The partition columns Spark discovers from `partition_by`: one per `name=value` folder."""
    columns = []
    for segment in filter(None, partition_by.split("/")):
        name, equals, value = segment.partition("=")
        if not equals or "{" in name:
            continue
        columns.append(PartitionColumn(name, _value_type(value)))
    return columns


def _value_type(value: str) -> str:
    template = PartitionTemplate.parse(value)
    literals = "".join(template.literals)
    if not template.placeholders:
        return "INT" if literals.isdigit() else "STRING"
    if len(template.placeholders) > 1 or literals:
        return "STRING"
    placeholder = template.placeholders[0]
    if placeholder.field is not None:
        return "STRING"  # record values: declared as text, whatever they look like
    if placeholder.fmt == "%Y-%m-%d":
        return "DATE"
    return "INT" if _NUMERIC_DIRECTIVES.fullmatch(placeholder.fmt or "") else "STRING"


def data_file_extension(settings: Settings) -> str:
    return FORMATS[settings.output.format].extension(settings.output.codec)


def layout_problems(settings: Settings) -> list[str]:
    """Why Spark and Auto Loader would not see this lake's data files at all (empty: they will)."""
    problems = []
    if settings.topic.startswith(("_", ".")):
        problems.append(
            f"topic {settings.topic!r}: data files are named {settings.topic}+<partition>+<offset>..., and Spark "
            "and Auto Loader skip every file whose name starts with '_' or '.'; nothing of this topic would be read"
        )
    for segment in filter(None, settings.output.partition_by.split("/")):
        if segment.startswith(".") or (segment.startswith("_") and "=" not in segment):
            problems.append(
                f"output.partition_by folder {segment!r} starts with {segment[0]!r}: Spark and Auto Loader skip it "
                "and everything below it. Fix: rename the folder, e.g. to name={...}"
            )
    return problems


def layout_warnings(settings: Settings) -> list[str]:
    warnings = []
    for segment in filter(None, settings.output.partition_by.split("/")):
        if "=" not in segment:
            warnings.append(
                f"output.partition_by folder {segment!r} has no 'name=': it gives no partition column "
                "(write it as e.g. year={timestamp:%Y})"
            )
    if not settings.output.metadata:
        warnings.append("output.metadata is false: rows carry no _topic/_partition/_offset/_timestamp/_key")
    return warnings


def spark_path(settings: Settings, databricks: bool = False) -> str:
    """output.url as Spark names it (each store says how: sink/stores/)."""
    url = settings.output.url
    return store_for(url).spark_path(url, settings.output.storage_options, databricks)


@dataclass(frozen=True)
class SparkReader:
    """An open-source Structured Streaming file-source reader of one lake, as data and as code."""

    format: str  # "parquet" | "json"
    path: str
    options: dict[str, str]
    schema: str | None  # DDL for .schema(); None: inferred when the query starts
    session_conf: dict[str, str] = field(default_factory=dict)

    def code(self) -> str:
        """Python that defines `df` from a SparkSession named `spark`."""
        lines = [f"spark.conf.set({json.dumps(k)}, {json.dumps(v)})" for k, v in self.session_conf.items()]
        lines.append("df = (")
        lines.append(f"    spark.readStream.format({json.dumps(self.format)})")
        if self.schema:
            lines.append(f"    .schema({json.dumps(self.schema)})")
        lines.extend(f"    .option({json.dumps(k)}, {json.dumps(v)})" for k, v in self.options.items())
        lines.append(f"    .load({json.dumps(self.path)})")
        lines.append(")")
        return "\n".join(lines) + "\n"

    def open(self, spark):
        """Run `code()` against `spark` and return its streaming DataFrame."""
        namespace = {"spark": spark}
        exec(compile(self.code(), "<ingest autoloader: spark reader>", "exec"), namespace)  # noqa: S102 - our own code
        return namespace["df"]


def spark_reader(settings: Settings, payload_schema: str | None = None) -> SparkReader:
    """The open-source reader of this topic's lake. With `payload_schema` (Spark DDL of the record's
    fields) the schema is explicit: metadata columns, then the payload, then partition columns.
    Without it the schema is inferred from the files present when the query starts."""
    output_format = FORMATS[settings.output.format]
    options = {"pathGlobFilter": f"*{data_file_extension(settings)}"}
    options.update(store_for(settings.output.url).spark_options(settings.output.storage_options))
    session_conf: dict[str, str] = {}
    schema = None
    if payload_schema:
        schema = ", ".join(
            filter(None, [_metadata_ddl(settings), payload_schema.strip().rstrip(","), _partition_ddl(settings)])
        )
    else:
        session_conf["spark.sql.streaming.schemaInference"] = "true"
    options.update(output_format.spark_options(inferred=not payload_schema))
    return SparkReader(output_format.spark_format, spark_path(settings), options, schema, session_conf)


def _metadata_ddl(settings: Settings) -> str:
    if not settings.output.metadata_columns:
        return ""
    columns = METADATA_COLUMNS + ((HEADERS_DDL,) if settings.output.with_headers else ())
    return ", ".join(f"{name} {kind}" for name, kind in columns)


def _partition_ddl(settings: Settings) -> str:
    return ", ".join(f"{c.name} {c.type}" for c in partition_columns(settings.output.partition_by))


def schema_hints(settings: Settings, payload_schema: str | None = None) -> str:
    """cloudFiles.schemaHints: exact types for the metadata and partition columns (and the payload, if given)."""
    return ", ".join(
        filter(None, [_metadata_ddl(settings), (payload_schema or "").strip().rstrip(","), _partition_ddl(settings)])
    )


def default_checkpoint(settings: Settings, databricks: bool) -> str:
    base = spark_path(settings, databricks).rstrip("/")
    return f"{base.rsplit('/', 1)[0]}/_checkpoints/{settings.topic}"


def default_table(settings: Settings) -> str:
    return "bronze." + re.sub(r"[^A-Za-z0-9_]", "_", settings.topic)


def autoloader_snippet(
    settings: Settings, checkpoint: str | None = None, table: str | None = None, payload_schema: str | None = None
) -> str:
    """Databricks Auto Loader (cloudFiles) for this topic, writing a Delta table."""
    checkpoint = checkpoint or default_checkpoint(settings, databricks=True)
    output_format = FORMATS[settings.output.format]
    options: list[tuple[str, str, str]] = [
        ("cloudFiles.format", output_format.spark_format, ""),
        ("cloudFiles.schemaLocation", checkpoint, "inferred schema and its versions live here"),
        ("cloudFiles.schemaEvolutionMode", "addNewColumns", "a new field stops the stream once; the restart adds it"),
    ]
    options.extend(output_format.autoloader_options())
    hints = schema_hints(settings, payload_schema)
    if hints:
        options.append(("cloudFiles.schemaHints", hints, ""))
    columns = partition_columns(settings.output.partition_by)
    if columns:
        options.append(
            ("cloudFiles.partitionColumns", ",".join(c.name for c in columns), "from the name=value folders")
        )
    options.append(
        (
            "cloudFiles.useIncrementalListing",
            "false",
            "names sort by offset only within one Kafka partition, so 'list after the last file' would miss files",
        )
    )
    options.append(
        (
            "pathGlobFilter",
            f"*{data_file_extension(settings)}",
            "data files only; _ingest/, _dlq/ and .tmp names are skipped anyway",
        )
    )
    lines = [
        f"# Databricks Auto Loader: topic {settings.topic} ({settings.output.format}) into a Delta table.",
        "# For large lakes prefer file notification mode (cloudFiles.useManagedFileEvents) over listing.",
        f"checkpoint = {json.dumps(checkpoint)}",
        "df = (",
        '    spark.readStream.format("cloudFiles")',
    ]
    for key, value, why in options:
        value_code = "checkpoint" if key == "cloudFiles.schemaLocation" else json.dumps(value)
        lines.append(f"    .option({json.dumps(key)}, {value_code})" + (f"  # {why}" if why else ""))
    lines += [
        f"    .load({json.dumps(spark_path(settings, databricks=True))})",
        ")",
        "(df.writeStream",
        '    .option("checkpointLocation", checkpoint)',
        '    .option("mergeSchema", "true")  # let the Delta table take the new columns too',
        '    .trigger(availableNow=True)  # or processingTime="1 minute" for a continuous stream',
        f"    .toTable({json.dumps(table or default_table(settings))}))",
    ]
    return "\n".join(lines) + "\n"


def spark_snippet(
    settings: Settings, checkpoint: str | None = None, table: str | None = None, payload_schema: str | None = None
) -> str:
    """Open-source Spark Structured Streaming: `spark_reader()`'s code and a writer."""
    reader = spark_reader(settings, payload_schema)
    checkpoint = checkpoint or default_checkpoint(settings, databricks=False)
    header = [f"# Open-source Spark Structured Streaming: topic {settings.topic} ({settings.output.format})."]
    if reader.schema is None:
        header.append("# The schema is inferred when the query starts: restart it to pick up new fields, or pass")
        header.append('# `ingest autoloader --schema "field TYPE, ..."` for an explicit schema.')
    if reader.path.startswith("s3a://"):
        header.append("# Needs hadoop-aws matching Spark's Hadoop (deploy/local/spark_jars.py fetches it);")
        header.append("# credentials come from Spark's environment (fs.s3a.* or the AWS credential chain).")
    if reader.path.startswith(("abfss://", "abfs://")):
        account = (
            reader.path.split("@", 1)[1].split("/", 1)[0] if "@" in reader.path else "<account>.dfs.core.windows.net"
        )
        header.append(
            "# Needs hadoop-azure matching Spark's Hadoop (deploy/local/spark_jars.py fetches it); credentials"
        )
        header.append(
            f"# come from Spark's configuration: fs.azure.account.key.{account} (or OAuth fs.azure.* settings)."
        )
    writer = [
        "(df.writeStream",
        f'    .option("checkpointLocation", {json.dumps(checkpoint)})',
        "    .trigger(availableNow=True)  # each run reads only files it has not seen",
        f"    .toTable({json.dumps(table or default_table(settings))}))",
    ]
    return "\n".join(header) + "\n" + reader.code() + "\n".join(writer) + "\n"


def small_files_note(settings: Settings) -> str:
    """How many files this config makes, as a comment: the small-files trade-off in numbers."""
    batch = settings.batch
    return (
        f"# Files: a quiet Kafka partition publishes one file per partition_by folder every batch.max_age "
        f"({batch.max_age:g}s): up to {3600 / batch.max_age:.0f} per partition per hour.\n"
        f"# A busy one publishes every {batch.max_records} records or {batch.max_bytes / 2**20:g} MiB "
        "(batch.max_records / max_bytes). Raise max_age for quiet topics.\n"
    )


def add_arguments(parser) -> None:
    parser.add_argument("config", type=Path, help="the consumer's YAML")
    parser.add_argument("--checkpoint", help="streaming checkpoint URL (default: <lake parent>/_checkpoints/<topic>)")
    parser.add_argument("--table", help="target table (default: bronze.<topic>)")
    parser.add_argument(
        "--schema",
        metavar="DDL",
        help='the payload fields as Spark DDL, e.g. "order_id BIGINT, amount DOUBLE": '
        "gives the open-source reader an explicit schema and Auto Loader schema hints",
    )
    parser.add_argument("--only", choices=["databricks", "spark"], help="print one snippet")


def command(args) -> int:

    try:
        settings = load_checked_settings(args.config)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 1
    problems = layout_problems(settings)
    for problem in problems:
        print(f"{args.config}: {problem}", file=sys.stderr)
    if problems:
        return 1
    for warning in layout_warnings(settings):
        print(f"{args.config}: warning: {warning}", file=sys.stderr)
    parts = []
    if args.only != "spark":
        parts.append(autoloader_snippet(settings, args.checkpoint, args.table, args.schema))
    if args.only != "databricks":
        parts.append(spark_snippet(settings, args.checkpoint, args.table, args.schema))
    print(small_files_note(settings) + "\n" + "\n".join(parts), end="")
    return 0
