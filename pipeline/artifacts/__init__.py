"""The artifacts the stages hand to each other: each file's name once.

A stage that writes one of these files and every stage that reads it use these names, so a
renamed artifact cannot leave a reader behind. This module imports nothing: a stage that only
needs a name depends on nothing else (dvc.yaml's code deps follow the imports). The readers,
which build the statistics' objects from the files, are in pipeline.artifacts.readers.

Folders come from params (`paths.features`, `paths.models`); `PUBLISHED` is the folder under
models/ that the publish stage replaces only when a run passes its guard rails.
"""

FEATURES = "features.parquet"  # under paths.features: the point-in-time rows (features stage)
SIGNAL_COUNTS = "signal_counts.json"  # under paths.features: the signals' counts over those rows (features stage)
CLOSE_RATES = "close_rates.csv"  # under paths.models: each signal's close rate and lift (close-rates stage)
SIGNALS = "signals.json"  # the frequency signals the close-rates stage chose
WEIGHTS = "weights.json"  # the points table and its header (weights stage)
THRESHOLDS = "thresholds.json"  # the MQL threshold and what it does (thresholds stage)
PUBLICATION = "publication.json"  # under models/published/: the publish stage's verdict
PUBLISHED = "published"  # models/published/: the last run that passed the guard rails
