// What both Node.js client tests check; the server's address comes from the environment
// tests/clients.rs sets.
'use strict';
const assert = require('node:assert/strict');

const config = {
  host: process.env.WATERSHED_HOST || '127.0.0.1',
  port: Number(process.env.WATERSHED_PORT),
  user: 'watershed',
  database: 'watershed',
};

const TYPES_SQL = `
SELECT 1::int2 AS i2, 2::int4 AS i4, 3::int8 AS i8,
       12.34::numeric(10,2) AS num, 1.5::float4 AS f4, 2.25::float8 AS f8,
       'hé llo'::text AS t, true AS b, DATE '2024-02-29' AS d,
       '2024-02-29 13:14:15+00'::timestamptz AS tstz,
       INTERVAL '1 day 2 hours' AS iv,
       ARRAY[1, 2, 3]::int4[] AS arr,
       NULL::int8 AS null_i8, NULL::text AS null_t`;

function check(condition, message) {
  assert.ok(condition, message);
  console.log(`ok ${message}`);
}

// Values as each driver returns them by default: int8 and numeric as strings (they do
// not fit a JS number), dates as Date objects.
function checkTypes(row, label) {
  assert.equal(Number(row.i2), 1);
  assert.equal(Number(row.i4), 2);
  assert.equal(String(row.i8), '3');
  assert.equal(String(row.num), '12.34');
  assert.equal(Number(row.f4), 1.5);
  assert.equal(Number(row.f8), 2.25);
  assert.equal(row.t, 'hé llo');
  assert.equal(row.b, true);
  assert.ok(row.d instanceof Date || typeof row.d === 'string', `date ${row.d}`);
  assert.equal(new Date(row.tstz).toISOString(), '2024-02-29T13:14:15.000Z');
  assert.ok(row.iv !== null && row.iv !== undefined, 'interval');
  assert.deepEqual(row.arr.map(Number), [1, 2, 3]);
  assert.equal(row.null_i8, null);
  assert.equal(row.null_t, null);
  console.log(`ok types ${label}`);
}

module.exports = { assert, check, checkTypes, config, TYPES_SQL };
