-- Live campaign impact per 1-minute window, against the lake's history for the same products.
WITH targeted AS (      -- the products each campaign advertises
  SELECT c.campaign_id, c.name, p.product_id
  FROM campaigns c JOIN products p ON p.product_id = c.product_id OR p.category = c.category),
history AS (            -- their share of all orders over two years of history
  SELECT t.campaign_id, count(*)::double / (SELECT count(*) FROM orders_history) AS share
  FROM orders_history h JOIN targeted t ON t.product_id = h.product_id
  GROUP BY t.campaign_id),
live_clicks AS (
  SELECT window_start, campaign_id, count(*) AS clicks
  FROM TUMBLE(clicks, ts, INTERVAL '1' MINUTE)
  WHERE campaign_id IS NOT NULL
  GROUP BY window_start, campaign_id),
window_orders AS (
  SELECT window_start, count(*) AS orders
  FROM TUMBLE(orders, ts, INTERVAL '1' MINUTE) GROUP BY window_start),
live_orders AS (        -- orders of advertised products in each window
  SELECT o.window_start, t.campaign_id, count(*) AS orders, sum(o.amount) AS revenue
  FROM TUMBLE(orders, ts, INTERVAL '1' MINUTE) o
  JOIN targeted t ON t.product_id = o.product_id
  GROUP BY o.window_start, t.campaign_id)
SELECT c.window_start, c.campaign_id, t.name, c.clicks, o.orders, o.revenue,
       round(o.orders::double / w.orders / h.share, 1) AS lift_vs_history
FROM live_clicks c
JOIN live_orders o ON o.window_start = c.window_start AND o.campaign_id = c.campaign_id
JOIN window_orders w ON w.window_start = c.window_start
JOIN history h ON h.campaign_id = c.campaign_id
JOIN (SELECT DISTINCT campaign_id, name FROM targeted) t ON t.campaign_id = c.campaign_id
ORDER BY c.window_start DESC, lift_vs_history DESC
LIMIT 10;
