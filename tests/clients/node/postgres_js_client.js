// postgres.js: prepares every statement by default (extended protocol, named
// statements, describe before bind), metadata, types, NULLs, a transaction block with a
// savepoint, an error with its SQLSTATE.
'use strict';
const postgres = require('postgres');
const { assert, check, checkTypes, config, TYPES_SQL } = require('./common');

async function main() {
  const sql = postgres({ ...config, max: 1, onnotice: () => {} });

  const [{ v }] = await sql`SELECT version() AS v`;
  check(v.startsWith('PostgreSQL 16'), `version() ${v}`);
  const tables = await sql`SELECT table_name FROM information_schema.tables WHERE table_schema = ${'public'}`;
  check(tables.some((r) => r.table_name === 'products'), 'information_schema.tables');

  const [typed] = await sql.unsafe(TYPES_SQL, [], { prepare: true });
  checkTypes(typed, 'prepared');

  for (let id = 1; id <= 6; id++) {
    const rows = await sql`SELECT product_id, name FROM products WHERE product_id = ${id}`;
    assert.equal(Number(rows[0].product_id), id);
  }
  console.log('ok prepared statement reused');
  const [p] = await sql`SELECT ${41}::int8 + 1 AS a, ${null}::text IS NULL AS b, ${'x'}::text AS c`;
  assert.deepEqual([String(p.a), p.b, p.c], ['42', true, 'x']);
  console.log('ok parameters');

  await sql`DROP TABLE IF EXISTS postgres_js_t`;
  await sql.begin(async (tx) => {
    await tx`CREATE TABLE postgres_js_t (id BIGINT, note TEXT)`;
    await tx`INSERT INTO postgres_js_t VALUES (${1}, ${'a'}), (${2}, ${null})`;
    await tx.savepoint(async (sp) => {
      await sp`INSERT INTO postgres_js_t VALUES (${3}, ${'c'})`;
    });
  });
  const rows = await sql`SELECT id, note FROM postgres_js_t ORDER BY id`;
  assert.deepEqual(rows.map((r) => [String(r.id), r.note]), [['1', 'a'], ['2', null], ['3', 'c']]);
  console.log('ok transaction block with savepoint');

  try {
    await sql`SELECT * FROM no_such_table`;
    assert.fail('unknown table succeeded');
  } catch (e) {
    check(e.code === '42P01', `undefined table is ${e.code}`);
  }
  await sql`DROP TABLE postgres_js_t`;
  await sql.end();
  console.log('postgres.js ok');
}

main().catch((e) => { console.error(e); process.exit(1); });
