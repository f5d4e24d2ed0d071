-- btse-collector: DuckDB views over the Parquet store, and shipped macros.
--
-- From the duckdb CLI (any DuckDB >= 1.1):
--   duckdb -cmd "SET VARIABLE btse_data_dir = '/path/to/data'" -cmd ".read collector/storage/views.sql"
-- From Python:
--   con = duckdb.connect(); con.execute("SET VARIABLE btse_data_dir = '/path/to/data'")
--   con.execute(open("collector/storage/views.sql").read())
-- or simply `collector.storage.query.connect(data_dir)`, which also copes with a store that
-- has never been written (the Store writes a zero-row `_schema.parquet` anchor per table so
-- that every view exists, with every column, even before the first row).
--
-- These views read published Parquet files only. `connect()` (and `btse-collector query`,
-- unless --published-only) also adds the rows flushed to the open journals of a running
-- collector, which plain DuckDB cannot read (collector/storage/live.py).
--
-- Every view keeps all columns of the files plus the Hive partition keys (`date`, and
-- `product`/`symbol`/`server` which are also columns of the files: DuckDB takes them from
-- the path, so filtering on them prunes whole folders). Timestamps are TIMESTAMPTZ (UTC).
-- The macros cast timestamps to DATE for pruning, so the session time zone is set to UTC.

SET TimeZone = 'UTC';

CREATE OR REPLACE VIEW book_changes AS
SELECT * FROM read_parquet(getvariable('btse_data_dir') || '/book_changes/**/*.parquet',
    hive_partitioning = true, union_by_name = true,
    hive_types = {'product': VARCHAR, 'symbol': VARCHAR, 'date': DATE});

CREATE OR REPLACE VIEW quotes AS
SELECT * FROM read_parquet(getvariable('btse_data_dir') || '/quotes/**/*.parquet',
    hive_partitioning = true, union_by_name = true,
    hive_types = {'product': VARCHAR, 'symbol': VARCHAR, 'date': DATE});

CREATE OR REPLACE VIEW book_snapshots AS
SELECT * FROM read_parquet(getvariable('btse_data_dir') || '/book_snapshots/**/*.parquet',
    hive_partitioning = true, union_by_name = true,
    hive_types = {'product': VARCHAR, 'symbol': VARCHAR, 'date': DATE});

CREATE OR REPLACE VIEW trades AS
SELECT * FROM read_parquet(getvariable('btse_data_dir') || '/trades/**/*.parquet',
    hive_partitioning = true, union_by_name = true,
    hive_types = {'product': VARCHAR, 'symbol': VARCHAR, 'date': DATE});

CREATE OR REPLACE VIEW otc_quotes AS
SELECT * FROM read_parquet(getvariable('btse_data_dir') || '/otc_quotes/**/*.parquet',
    hive_partitioning = true, union_by_name = true,
    hive_types = {'symbol': VARCHAR, 'date': DATE});

CREATE OR REPLACE VIEW events AS
SELECT * FROM read_parquet(getvariable('btse_data_dir') || '/events/**/*.parquet',
    hive_partitioning = true, union_by_name = true,
    hive_types = {'date': DATE});

CREATE OR REPLACE VIEW raw AS
SELECT * FROM read_parquet(getvariable('btse_data_dir') || '/raw/**/*.parquet',
    hive_partitioning = true, union_by_name = true,
    hive_types = {'server': VARCHAR, 'date': DATE});

-- The order book of (product, symbol, grouping) as the collector knew it at `p_ts`
-- (compared with local_timestamp): the last snapshot at or before p_ts, then every change
-- after it, keeping the latest amount per (side, price) and dropping levels at 0.
-- level 0 is the best bid / best ask.
-- A book_changes file's date= folder is the date of its first row, never later than its
-- rows' dates, so `date <= p_ts::DATE` prunes safely.
CREATE OR REPLACE MACRO book_at(p_product, p_symbol, p_ts, p_grouping := 0) AS TABLE
WITH ch AS (
    SELECT side, price, amount, is_snapshot, seq, local_timestamp
    FROM book_changes
    WHERE product = p_product AND symbol = p_symbol AND grouping = p_grouping
      AND date <= CAST(CAST(p_ts AS TIMESTAMPTZ) AS DATE)
      AND local_timestamp <= CAST(p_ts AS TIMESTAMPTZ)
),
snap AS (
    SELECT local_timestamp AS snap_ts, seq AS snap_seq
    FROM ch WHERE is_snapshot
    ORDER BY local_timestamp DESC, seq DESC
    LIMIT 1
),
levels AS (
    SELECT ch.side, ch.price, arg_max(ch.amount, ch.seq) AS amount, max(ch.seq) AS seq
    FROM ch, snap
    WHERE ch.local_timestamp >= snap.snap_ts
      AND (ch.local_timestamp > snap.snap_ts OR ch.seq >= snap.snap_seq)
    GROUP BY ch.side, ch.price
)
SELECT side,
       CAST(row_number() OVER (PARTITION BY side
            ORDER BY CASE WHEN side = 'bid' THEN -price ELSE price END) - 1 AS INTEGER) AS level,
       price, amount, seq
FROM levels
WHERE amount > 0
ORDER BY side DESC, level;

-- Trades of (product, symbol) with local_timestamp in [p_from, p_to), each with the quote
-- that prevailed when it was received (ASOF JOIN on local_timestamp). p_source: 'book'
-- (top of the rebuilt book) or 'l1' (BTSE snapshotL1). Quotes older than one day before
-- p_from are not searched.
CREATE OR REPLACE MACRO trades_with_quote(p_product, p_symbol, p_from, p_to, p_source := 'book') AS TABLE
SELECT t.exchange, t.product, t.symbol, t.timestamp, t.local_timestamp, t.id, t.side, t.price,
       t.amount, q.bid_price, q.bid_amount, q.ask_price, q.ask_amount,
       q.local_timestamp AS quote_local_timestamp
FROM (
    SELECT * FROM trades
    WHERE product = p_product AND symbol = p_symbol
      AND date BETWEEN CAST(CAST(p_from AS TIMESTAMPTZ) AS DATE) AND CAST(CAST(p_to AS TIMESTAMPTZ) AS DATE)
      AND local_timestamp >= CAST(p_from AS TIMESTAMPTZ) AND local_timestamp < CAST(p_to AS TIMESTAMPTZ)
) t
ASOF LEFT JOIN (
    SELECT * FROM quotes
    WHERE product = p_product AND symbol = p_symbol AND source = p_source
      AND date BETWEEN CAST(CAST(p_from AS TIMESTAMPTZ) AS DATE) - 1 AND CAST(CAST(p_to AS TIMESTAMPTZ) AS DATE)
      AND local_timestamp < CAST(p_to AS TIMESTAMPTZ)
) q
ON t.local_timestamp >= q.local_timestamp
ORDER BY t.local_timestamp, t.id;

-- Holes in the data between p_from and p_to, from the events table, and when each healed:
-- a book problem (gap, crossed, resync, stale with a symbol) heals at the next `synced`
-- event of that book; a connection problem (disconnected, stale) at the next `connected`
-- of that connection. shed, decode_error, error and quarantined rows are listed as they are
-- (healed_at NULL): they are losses, not outages.
CREATE OR REPLACE MACRO gaps(p_from, p_to) AS TABLE
SELECT g.*, g.healed_at - g.started AS duration FROM (
SELECT e.kind, e.product, e.symbol, e.topic, e.connection, e.local_timestamp AS started,
       CASE
         WHEN e.kind IN ('gap', 'crossed', 'resync', 'stale') AND e.symbol IS NOT NULL THEN (
           SELECT min(h.local_timestamp) FROM events h
           WHERE h.kind = 'synced' AND h.product = e.product AND h.symbol = e.symbol
             AND h.local_timestamp >= e.local_timestamp)
         WHEN e.kind IN ('disconnected', 'stale') AND e.connection IS NOT NULL THEN (
           SELECT min(h.local_timestamp) FROM events h
           WHERE h.kind = 'connected' AND h.connection = e.connection
             AND h.local_timestamp > e.local_timestamp)
       END AS healed_at,
       e.count, e.detail
FROM events e
WHERE e.kind IN ('gap', 'crossed', 'resync', 'stale', 'disconnected', 'shed', 'decode_error',
                 'error', 'quarantined')
  AND e.date BETWEEN CAST(CAST(p_from AS TIMESTAMPTZ) AS DATE) AND CAST(CAST(p_to AS TIMESTAMPTZ) AS DATE)
  AND e.local_timestamp >= CAST(p_from AS TIMESTAMPTZ) AND e.local_timestamp < CAST(p_to AS TIMESTAMPTZ)
) g
ORDER BY g.started;

-- Per book: rows, snapshots, first/last change and number of holes (gap, crossed) stored in
-- [p_from, p_to).
CREATE OR REPLACE MACRO book_coverage(p_from, p_to) AS TABLE
SELECT b.product, b.symbol, b.grouping, count(*) AS rows,
       count(DISTINCT CASE WHEN b.is_snapshot THEN b.seq END) AS snapshots,
       min(b.local_timestamp) AS first_change, max(b.local_timestamp) AS last_change,
       (SELECT count(*) FROM events e
        WHERE e.kind IN ('gap', 'crossed') AND e.product = b.product AND e.symbol = b.symbol
          AND e.local_timestamp >= CAST(p_from AS TIMESTAMPTZ)
          AND e.local_timestamp < CAST(p_to AS TIMESTAMPTZ)) AS holes
FROM book_changes b
WHERE b.date <= CAST(CAST(p_to AS TIMESTAMPTZ) AS DATE)
  AND b.local_timestamp >= CAST(p_from AS TIMESTAMPTZ) AND b.local_timestamp < CAST(p_to AS TIMESTAMPTZ)
GROUP BY b.product, b.symbol, b.grouping
ORDER BY b.product, b.symbol, b.grouping;
