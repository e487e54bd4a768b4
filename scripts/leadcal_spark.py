"""`leadcal` for Spark launchers: `spark-submit scripts/leadcal_spark.py --params params.yaml run`, or
a Databricks "Python script" task pointing here (README "Scale").

Why a file of its own: spark-submit and Databricks run a Python *file*, and running
pipeline/cli.py directly would put pipeline/ first on sys.path, where pipeline/io.py and its
neighbours would shadow modules of the same name. The exit code is leadcal's (0 ok, 2 a stage
refused its input, ...), so the launcher marks a refused run as failed.
"""

import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main())
