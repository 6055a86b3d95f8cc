"""Helpers of the benchmark runner's tests: tiny configs and CSV reading."""
import csv
import os

CONFIG_YAML = """\
EXPERIMENT:
  PROJECT: "bench_test"
DISTILLER:
  TYPE: "{kind}"
  TEACHER: "{teacher}"
  STUDENT: "{student}"
"""


def write_config(folder, name, kind, student="resnet8", teacher="resnet8"):
    path = os.path.join(str(folder), name + ".yaml")
    with open(path, "w") as f:
        f.write(CONFIG_YAML.format(kind=kind, student=student, teacher=teacher))
    return path


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
