-- Weekly sales of campaign-targeted products inside vs outside their campaign periods
-- (the README's third demo query).
WITH targeted AS (
  SELECT c.campaign_id, p.product_id, c.starts_at, c.ends_at
  FROM campaigns c JOIN products p ON p.product_id = c.product_id OR p.category = c.category),
weekly AS (
  SELECT t.campaign_id, o.ts BETWEEN t.starts_at AND t.ends_at AS in_campaign,
         date_trunc('week', o.ts) AS week, sum(o.amount) AS sales
  FROM orders_history o JOIN targeted t ON o.product_id = t.product_id
  GROUP BY 1, 2, 3)
SELECT in_campaign, round(avg(sales), 2) AS avg_weekly_sales_per_campaign
FROM weekly GROUP BY 1 ORDER BY 1
