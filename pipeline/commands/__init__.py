"""The commands that are not DVC stages: `leadcal init`, `leadcal score`, `leadcal plan`."""
