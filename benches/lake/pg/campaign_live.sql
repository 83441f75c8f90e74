-- benches/campaign_live.sql for PostgreSQL: the same query over a snapshot of the live
-- sources, with date_bin in place of TUMBLE (1-minute windows aligned to the epoch, as
-- TUMBLE's are) and double precision for DOUBLE.
WITH targeted AS (
  SELECT c.campaign_id, c.name, p.product_id
  FROM campaigns c JOIN products p ON p.product_id = c.product_id OR p.category = c.category),
history AS (
  SELECT t.campaign_id, count(*)::double precision / (SELECT count(*) FROM orders_history) AS share
  FROM orders_history h JOIN targeted t ON t.product_id = h.product_id
  GROUP BY t.campaign_id),
clicks_w AS (
  SELECT *, date_bin('1 minute', ts, timestamptz '1970-01-01 00:00:00+00') AS window_start FROM clicks),
orders_w AS (
  SELECT *, date_bin('1 minute', ts, timestamptz '1970-01-01 00:00:00+00') AS window_start FROM orders),
live_clicks AS (
  SELECT window_start, campaign_id, count(*) AS clicks
  FROM clicks_w
  WHERE campaign_id IS NOT NULL
  GROUP BY window_start, campaign_id),
window_orders AS (
  SELECT window_start, count(*) AS orders
  FROM orders_w GROUP BY window_start),
live_orders AS (
  SELECT o.window_start, t.campaign_id, count(*) AS orders, sum(o.amount) AS revenue
  FROM orders_w o
  JOIN targeted t ON t.product_id = o.product_id
  GROUP BY o.window_start, t.campaign_id)
SELECT c.window_start, c.campaign_id, t.name, c.clicks, o.orders, o.revenue,
       round((o.orders::double precision / w.orders / h.share)::numeric, 1) AS lift_vs_history
FROM live_clicks c
JOIN live_orders o ON o.window_start = c.window_start AND o.campaign_id = c.campaign_id
JOIN window_orders w ON w.window_start = c.window_start
JOIN history h ON h.campaign_id = c.campaign_id
JOIN (SELECT DISTINCT campaign_id, name FROM targeted) t ON t.campaign_id = c.campaign_id
ORDER BY c.window_start DESC, lift_vs_history DESC
LIMIT 10;
