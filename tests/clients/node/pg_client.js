// node-postgres (pg): simple and extended protocol, named prepared statements,
// metadata, every type, NULLs, a transaction block, an error with its SQLSTATE.
'use strict';
const { Client } = require('pg');
const { assert, check, checkTypes, config, TYPES_SQL } = require('./common');

async function main() {
  const client = new Client(config);
  await client.connect();

  const version = (await client.query('SELECT version() AS v')).rows[0].v;
  check(version.startsWith('PostgreSQL 16'), `version() ${version}`);
  const tables = await client.query(
    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'");
  check(tables.rows.some((r) => r.table_name === 'products'), 'information_schema.tables');

  checkTypes((await client.query(TYPES_SQL)).rows[0], 'simple protocol');
  // Any parameter makes pg use the extended protocol.
  const extended = await client.query(`SELECT * FROM (${TYPES_SQL}) t WHERE $1::int8 = 1`, [1]);
  checkTypes(extended.rows[0], 'extended protocol');

  const param = await client.query('SELECT $1::int8 + 1 AS a, $2::text AS b, $3::text IS NULL AS c', [41, 'x', null]);
  assert.deepEqual(param.rows[0], { a: '42', b: 'x', c: true });
  console.log('ok parameters');

  for (let id = 1; id <= 3; id++) {
    const r = await client.query({ name: 'product_by_id', text: 'SELECT name FROM products WHERE product_id = $1', values: [id] });
    assert.equal(r.rows.length, 1);
  }
  console.log('ok named prepared statement');

  await client.query('DROP TABLE IF EXISTS node_pg_t');
  await client.query('BEGIN');
  await client.query('CREATE TABLE node_pg_t (id BIGINT, note TEXT)');
  const inserted = await client.query('INSERT INTO node_pg_t VALUES ($1, $2), ($3, $4)', [1, 'a', 2, null]);
  check(inserted.rowCount === 2, `INSERT rowCount ${inserted.rowCount}`);
  await client.query('COMMIT');
  const rows = await client.query('SELECT id, note FROM node_pg_t ORDER BY id');
  assert.deepEqual(rows.rows, [{ id: '1', note: 'a' }, { id: '2', note: null }]);
  console.log('ok transaction block');

  try {
    await client.query('SELECT 1 / 0');
    assert.fail('division by zero succeeded');
  } catch (e) {
    check(e.code === '22012', `division by zero is ${e.code}`);
  }
  try {
    await client.query('SELECT nope FROM products');
    assert.fail('unknown column succeeded');
  } catch (e) {
    check(e.code === '42703', `undefined column is ${e.code}`);
  }
  await client.query('DROP TABLE node_pg_t');
  await client.end();
  console.log('node-postgres ok');
}

main().catch((e) => { console.error(e); process.exit(1); });
