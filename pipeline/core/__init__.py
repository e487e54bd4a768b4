"""The statistics: pure functions and objects on arrays and frames (close rates, signals, decay,
calibration, CRM arithmetic, funnel analyses). They read no file and no Params path; the stages
call them."""
