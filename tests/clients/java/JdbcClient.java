// pgJDBC (Debian's libpostgresql-jdbc-java): DatabaseMetaData the way DBeaver and Metabase
// call it (getSchemas, getTables with type filters, getColumns, getTypeInfo,
// getPrimaryKeys, getIndexInfo), server-prepared statements (after prepareThreshold = 5 executions),
// every type, NULLs, a transaction block, an error with its SQLSTATE.
import java.math.BigDecimal;
import java.sql.*;
import java.util.ArrayList;
import java.util.List;

public class JdbcClient {
    static void check(boolean condition, String message) {
        if (!condition) throw new AssertionError(message);
        System.out.println("ok " + message);
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://" + System.getenv().getOrDefault("WATERSHED_HOST", "127.0.0.1") + ":"
            + System.getenv("WATERSHED_PORT") + "/watershed?user=watershed&ApplicationName=jdbc-test";
        try (Connection conn = DriverManager.getConnection(url)) {
            DatabaseMetaData meta = conn.getMetaData();
            check(meta.getDatabaseMajorVersion() == 16, "database major version " + meta.getDatabaseProductVersion());
            check(meta.getDatabaseProductName().equals("PostgreSQL"), "product name " + meta.getDatabaseProductName());

            List<String> schemas = new ArrayList<>();
            try (ResultSet rs = meta.getSchemas()) {
                while (rs.next()) schemas.add(rs.getString("TABLE_SCHEM"));
            }
            check(schemas.contains("public"), "getSchemas " + schemas);
            try (ResultSet rs = meta.getCatalogs()) {
                check(rs.next() && rs.getString(1) != null, "getCatalogs");
            }

            List<String> tables = new ArrayList<>();
            try (ResultSet rs = meta.getTables(null, "public", "%", new String[] {"TABLE", "VIEW", "MATERIALIZED VIEW", "FOREIGN TABLE", "PARTITIONED TABLE"})) {
                while (rs.next()) tables.add(rs.getString("TABLE_NAME") + ":" + rs.getString("TABLE_TYPE"));
            }
            check(tables.contains("products:TABLE") && tables.contains("orders_history:TABLE"), "getTables " + tables);
            try (ResultSet rs = meta.getTables(null, null, "%", null)) {
                int n = 0;
                while (rs.next()) n++;
                check(n >= 4, "getTables without filters: " + n);
            }

            List<String> columns = new ArrayList<>();
            try (ResultSet rs = meta.getColumns(null, "public", "products", "%")) {
                while (rs.next()) {
                    columns.add(rs.getInt("ORDINAL_POSITION") + ":" + rs.getString("COLUMN_NAME") + ":" + rs.getString("TYPE_NAME")
                        + ":" + rs.getInt("DATA_TYPE") + ":" + rs.getString("IS_NULLABLE"));
                }
            }
            check(columns.size() == 4 && columns.get(0).equals("1:product_id:int8:" + Types.BIGINT + ":NO"), "getColumns " + columns);

            int typeCount = 0;
            boolean sawInt8 = false;
            try (ResultSet rs = meta.getTypeInfo()) {
                while (rs.next()) {
                    typeCount++;
                    sawInt8 |= "int8".equals(rs.getString("TYPE_NAME"));
                }
            }
            check(typeCount > 10 && sawInt8, "getTypeInfo: " + typeCount + " types");

            try (ResultSet rs = meta.getPrimaryKeys(null, "public", "products")) {
                // Delta tables have no primary keys: an empty, well-formed result.
                check(!rs.next() && rs.getMetaData().getColumnCount() >= 6, "getPrimaryKeys");
            }

            // getIndexInfo on a table with an index (a Z-order clustering; never unique).
            try (Statement st = conn.createStatement()) {
                st.execute("DROP TABLE IF EXISTS jdbc_idx_t");
                st.execute("CREATE TABLE jdbc_idx_t (id BIGINT, name TEXT, at TIMESTAMP)");
                st.execute("INSERT INTO jdbc_idx_t VALUES (1, 'a', TIMESTAMP '2024-01-01 00:00:00'), (2, 'b', NULL)");
                st.execute("CREATE INDEX jdbc_idx_t_at ON jdbc_idx_t (at DESC, id)");
            }
            List<String> indexColumns = new ArrayList<>();
            try (ResultSet rs = meta.getIndexInfo(null, "public", "jdbc_idx_t", false, true)) {
                while (rs.next()) {
                    indexColumns.add(rs.getString("INDEX_NAME") + ":" + rs.getShort("ORDINAL_POSITION") + ":"
                        + rs.getString("COLUMN_NAME") + ":" + rs.getString("ASC_OR_DESC") + ":" + rs.getBoolean("NON_UNIQUE"));
                }
            }
            check(indexColumns.equals(List.of("jdbc_idx_t_at:1:at:D:true", "jdbc_idx_t_at:2:id:A:true")), "getIndexInfo " + indexColumns);
            try (ResultSet rs = meta.getIndexInfo(null, "public", "jdbc_idx_t", true, true)) {
                check(!rs.next(), "getIndexInfo unique only: none");
            }
            try (Statement st = conn.createStatement()) {
                st.execute("DROP TABLE jdbc_idx_t");
            }

            try (Statement st = conn.createStatement();
                 ResultSet rs = st.executeQuery("SELECT 1::int2 AS i2, 2::int4 AS i4, 3::int8 AS i8, 12.34::numeric(10,2) AS num,"
                     + " 1.5::float4 AS f4, 2.25::float8 AS f8, 'hé llo'::text AS t, true AS b, DATE '2024-02-29' AS d,"
                     + " TIMESTAMP '2024-02-29 13:14:15.5' AS ts, '2024-02-29 13:14:15+00'::timestamptz AS tstz,"
                     + " INTERVAL '1 day 2 hours' AS iv, ARRAY[1, 2, 3]::int8[] AS arr, NULL::int8 AS n")) {
                check(rs.next(), "types row");
                check(rs.getShort("i2") == 1 && rs.getInt("i4") == 2 && rs.getLong("i8") == 3, "integers");
                check(rs.getBigDecimal("num").compareTo(new BigDecimal("12.34")) == 0, "numeric");
                check(rs.getFloat("f4") == 1.5f && rs.getDouble("f8") == 2.25, "floats");
                check(rs.getString("t").equals("hé llo") && rs.getBoolean("b"), "text and bool");
                check(rs.getDate("d").toString().equals("2024-02-29"), "date " + rs.getDate("d"));
                check(rs.getTimestamp("ts").toString().equals("2024-02-29 13:14:15.5"), "timestamp " + rs.getTimestamp("ts"));
                check(rs.getObject("tstz", java.time.OffsetDateTime.class).toInstant().toString().equals("2024-02-29T13:14:15Z"), "timestamptz");
                check(rs.getObject("iv") != null, "interval " + rs.getString("iv"));
                Long[] arr = (Long[]) rs.getArray("arr").getArray();
                check(arr.length == 3 && arr[2] == 3L, "array");
                rs.getLong("n");
                check(rs.wasNull(), "NULL");
            }

            // Server-prepared after prepareThreshold (5) executions; the same statement keeps working.
            try (PreparedStatement ps = conn.prepareStatement("SELECT name, price FROM products WHERE product_id = ?")) {
                for (int i = 1; i <= 8; i++) {
                    ps.setLong(1, i);
                    try (ResultSet rs = ps.executeQuery()) {
                        check(rs.next() && rs.getString(1) != null && rs.getBigDecimal(2) != null, "prepared execution " + i);
                    }
                }
                ps.setNull(1, Types.BIGINT);
                try (ResultSet rs = ps.executeQuery()) {
                    check(!rs.next(), "NULL parameter matches nothing");
                }
            }

            try (Statement st = conn.createStatement()) {
                st.execute("DROP TABLE IF EXISTS jdbc_t");
            }
            conn.setAutoCommit(false);
            try (Statement st = conn.createStatement()) {
                st.execute("CREATE TABLE jdbc_t (id BIGINT, note TEXT)");
                try (PreparedStatement ps = conn.prepareStatement("INSERT INTO jdbc_t VALUES (?, ?)")) {
                    ps.setLong(1, 1);
                    ps.setString(2, "a");
                    check(ps.executeUpdate() == 1, "insert in a block");
                    ps.setLong(1, 2);
                    ps.setNull(2, Types.VARCHAR);
                    ps.executeUpdate();
                }
                Savepoint sp = conn.setSavepoint("s1");
                conn.releaseSavepoint(sp);
                conn.commit();
                try (ResultSet rs = st.executeQuery("SELECT count(*), count(note) FROM jdbc_t")) {
                    check(rs.next() && rs.getLong(1) == 2 && rs.getLong(2) == 1, "rows after commit");
                }
                conn.commit();
                try {
                    st.executeQuery("SELECT 1 / 0");
                    throw new AssertionError("division by zero succeeded");
                } catch (SQLException e) {
                    check("22012".equals(e.getSQLState()), "division by zero is " + e.getSQLState());
                }
                conn.rollback();
                conn.setAutoCommit(true);
                st.execute("DROP TABLE jdbc_t");
            }
        }
        System.out.println("pgjdbc ok");
    }
}
