-- The practical limit for leadcal's extract + features + close-rates: one hand-written DuckDB query.
--
-- It reads the Parquet export benchmarks/scale.py generates (leads, activities, stages), applies
-- leadcal's point-in-time rules with params.yaml's defaults, and returns every activity's and fit
-- value's leads, customers, close rate, 95 % Wilson interval, expected close rate and lift: the
-- columns of models/close_rates.csv for those signals. scale.py runs it in the same run as leadcal,
-- checks the numbers agree, and reports leadcal's CPU and wall time as a ratio to it.
--
--   duckdb -csv -cmd "SET VARIABLE export_dir = '/path/to/raw'" < benchmarks/reference.sql > reference.csv
--
-- The rules (docs/method.md; pipeline/stages/features.py, pipeline/stages/close_rates.py):
-- - export date: the latest timestamp in any table; a lead is matured (its outcome known) when
--   created at least horizon_days (90) before it, and closed when it became a customer within them;
-- - a lead is seen at 0, 7 and 30 days after creation while still open (no customer or lost stage
--   yet) and not after the export date; at each moment it sees only events strictly before it and
--   not before its creation;
-- - each signal counts a lead once, at the first moment it shows the signal; its expected close
--   rate is the mean, over those leads, of the close rate of all matured leads seen at that moment;
--   lift = close rate / expected;
-- - fit values are the lead's attributes, numbers in params.yaml's bands (signals.numeric_bins),
--   missing as 'unknown' (the bands below are params.yaml's).
-- What it leaves out, because the generated export needs none of it: extract's validation and
-- repairs (the export is clean), frequency and recency signals, shrinkage, rare-value pooling.

SET VARIABLE horizon_days = 90;
SET VARIABLE z = 1.959963984540054;  -- the normal quantile of a 95 % interval

WITH
leads AS (SELECT * FROM read_parquet(getvariable('export_dir') || '/leads.parquet')),
activities AS (SELECT * FROM read_parquet(getvariable('export_dir') || '/activities.parquet')),
stages AS (SELECT * FROM read_parquet(getvariable('export_dir') || '/stages.parquet')),
export_date AS (
    SELECT GREATEST((SELECT MAX(created_at) FROM leads), (SELECT MAX(occurred_at) FROM activities),
                    (SELECT MAX(entered_at) FROM stages)) AS as_of
),
lead_frame AS (  -- matured leads: outcome and label
    SELECT l.*, o.first_outcome_at,
           COALESCE(c.customer_at <= l.created_at + TO_DAYS(getvariable('horizon_days')), FALSE)::INT AS closed
    FROM leads l
    LEFT JOIN (SELECT lead_id, MIN(entered_at) AS first_outcome_at FROM stages
               WHERE stage IN ('customer', 'lost') GROUP BY lead_id) o USING (lead_id)
    LEFT JOIN (SELECT lead_id, MIN(entered_at) AS customer_at FROM stages WHERE stage = 'customer' GROUP BY lead_id) c
        USING (lead_id)
    WHERE l.created_at + TO_DAYS(getvariable('horizon_days')) <= (SELECT as_of FROM export_date)
),
moments AS (  -- one row per matured lead and moment it reached open
    SELECT f.lead_id, f.closed, s.days AS snapshot_days, f.created_at, f.created_at + TO_DAYS(s.days) AS cutoff_at
    FROM lead_frame f CROSS JOIN (VALUES (0), (7), (30)) AS s(days)
    WHERE f.created_at + TO_DAYS(s.days) <= (SELECT as_of FROM export_date)
      AND (f.first_outcome_at IS NULL OR f.first_outcome_at > f.created_at + TO_DAYS(s.days))
),
snapshot_rate AS (SELECT snapshot_days, AVG(closed) AS rate FROM moments GROUP BY snapshot_days),
first_event AS (  -- a lead's first event of each activity on or after its creation
    SELECT a.lead_id, a.activity, MIN(a.occurred_at) AS first_at
    FROM activities a JOIN lead_frame f ON a.lead_id = f.lead_id AND a.occurred_at >= f.created_at
    GROUP BY a.lead_id, a.activity
),
shown AS (  -- each signal at the first moment a lead shows it
    SELECT 'engagement' AS kind, 'activity' AS type, e.activity AS attribute, 'yes' AS value,
           m.lead_id, MIN(m.snapshot_days) AS snapshot_days, ANY_VALUE(m.closed) AS closed
    FROM first_event e JOIN moments m ON e.lead_id = m.lead_id AND e.first_at < m.cutoff_at
    GROUP BY e.activity, m.lead_id
    UNION ALL
    SELECT 'fit', 'fit', u.attribute, u.value, u.lead_id, u.snapshot_days, u.closed
    FROM (
        SELECT m.lead_id, m.snapshot_days, m.closed,
               CASE WHEN f.company_size IS NULL OR isnan(f.company_size) THEN 'unknown'
                    WHEN f.company_size >= 5001 THEN '5001+' WHEN f.company_size >= 1001 THEN '1001-5k'
                    WHEN f.company_size >= 201 THEN '201-1k' WHEN f.company_size >= 51 THEN '51-200'
                    WHEN f.company_size >= 11 THEN '11-50' WHEN f.company_size >= 1 THEN '1-10' ELSE '<1' END AS company_size,
               CASE WHEN f.annual_revenue IS NULL OR isnan(f.annual_revenue) THEN 'unknown'
                    WHEN f.annual_revenue >= 1e9 THEN '1B+' WHEN f.annual_revenue >= 2.5e8 THEN '250M-1B'
                    WHEN f.annual_revenue >= 5e7 THEN '50M-250M' WHEN f.annual_revenue >= 1e7 THEN '10M-50M'
                    WHEN f.annual_revenue >= 1e6 THEN '1M-10M' WHEN f.annual_revenue >= 0 THEN '0-1M' ELSE '<0' END
                   AS annual_revenue,
               COALESCE(f.industry, 'unknown') AS industry, COALESCE(f.seniority, 'unknown') AS seniority,
               COALESCE(f.country, 'unknown') AS country, COALESCE(f.source, 'unknown') AS source,
               COALESCE(f.email_type, 'unknown') AS email_type
        FROM moments m JOIN lead_frame f USING (lead_id)
        WHERE m.snapshot_days = 0  -- a lead open at any moment was open at creation: its first moment
    ) UNPIVOT (value FOR attribute IN (company_size, annual_revenue, industry, seniority, country, source, email_type)) u
),
counted AS (
    SELECT kind, type, attribute, value, COUNT(*) AS leads, SUM(closed) AS customers, AVG(r.rate) AS expected_close_rate
    FROM shown s JOIN snapshot_rate r USING (snapshot_days)
    GROUP BY kind, type, attribute, value
),
wilson AS (
    SELECT *, customers / leads AS close_rate,
           (customers / leads + getvariable('z') ^ 2 / (2 * leads)) / (1 + getvariable('z') ^ 2 / leads) AS centre,
           getvariable('z') / (1 + getvariable('z') ^ 2 / leads)
               * SQRT((customers / leads) * (1 - customers / leads) / leads + getvariable('z') ^ 2 / (4 * leads ^ 2)) AS half
    FROM counted
)
SELECT CASE WHEN type = 'activity' THEN attribute ELSE attribute || ' = ' || value END AS signal,
       kind, type, attribute, value, leads, customers, close_rate,
       GREATEST(LEAST(centre - half, close_rate), 0) AS ci_low, LEAST(GREATEST(centre + half, close_rate), 1) AS ci_high,
       expected_close_rate, close_rate / expected_close_rate AS lift
FROM wilson
ORDER BY type, attribute, value;
