"""Per-epoch CSV records of a run (``metrics.csv``, ``alignment.csv``): the one reader and writers."""
import csv
import os


def _number(key, value):
    if key == "epoch":
        return int(float(value))
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def read_csv(path):
    """Rows as dicts: ``epoch`` an int, numbers as floats (exactly as written), other text kept; [] if absent."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return [{k: _number(k, v) for k, v in row.items()} for row in csv.DictReader(f)]


def append_csv(path, record):
    """Append one row (writing the header first when the file is new)."""
    new = not os.path.exists(path)
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(record))
        if new:
            writer.writeheader()
        writer.writerow(record)


def truncate_csv(path, last_epoch):
    """Drop the rows logged after ``last_epoch`` (a resumed run redoes those epochs)."""
    if not os.path.exists(path):
        return
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, list(reader)
    if not fields:
        return
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(row for row in rows if int(float(row["epoch"])) <= last_epoch)
