-- psql interpolates :n (set with -v n=21) into the statement it sends.
SELECT :n::int8 * 2 AS doubled, NULL::text IS NULL AS isnull;
