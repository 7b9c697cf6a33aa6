/*
 * Creates HBase tables pre-split at given keys, with HBase's own Admin API: the Thrift 1
 * server that happybase speaks has no split keys in its createTable. newcore's ensure_tables
 * (newcore/adapters/hbase/read_store.py) runs it through create-tables.sh, which compiles it
 * once and puts the jars deploy/hbase.sh installed on its classpath.
 *
 *   CreateTables HBASE_SITE_XML SPLITS TABLE:FAMILY:VERSIONS...
 *
 * HBASE_SITE_XML: the client configuration that names the cluster (its ZooKeeper quorum);
 * SPLITS: the split keys in hex, comma-separated ("01,02,...,0f"); TABLE:FAMILY:VERSIONS: a
 * table with one column family keeping that many versions. Prints one line per table on stdout: "created TABLE", or
 * "exists TABLE" when it was there already (made meanwhile by another caller: checking its
 * regions is the caller's business). Errors go to stderr with one of these exit codes:
 *   2  bad arguments
 *   3  HBase refused (not retryable: a bad name, a family it does not accept, ...)
 *   4  HBase could not be reached or did not finish in time (retry later)
 */

import java.io.IOException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.hbase.DoNotRetryIOException;
import org.apache.hadoop.hbase.HBaseConfiguration;
import org.apache.hadoop.hbase.TableExistsException;
import org.apache.hadoop.hbase.TableName;
import org.apache.hadoop.hbase.client.Admin;
import org.apache.hadoop.hbase.client.ColumnFamilyDescriptorBuilder;
import org.apache.hadoop.hbase.client.Connection;
import org.apache.hadoop.hbase.client.ConnectionFactory;
import org.apache.hadoop.hbase.client.TableDescriptor;
import org.apache.hadoop.hbase.client.TableDescriptorBuilder;

public final class CreateTables {
  private static final long WAIT_SECONDS = 120;

  private record Spec(String table, String family, int versions) {}

  public static void main(String[] args) {
    List<Spec> specs = new ArrayList<>();
    byte[][] splits;
    try {
      if (args.length < 3) {
        throw new IllegalArgumentException(
            "usage: CreateTables HBASE_SITE_XML SPLITS TABLE:FAMILY:VERSIONS...");
      }
      String[] hex = args[1].split(",");
      splits = new byte[hex.length][];
      for (int i = 0; i < hex.length; i++) {
        splits[i] = HexFormat.of().parseHex(hex[i]);
      }
      for (int i = 2; i < args.length; i++) {
        String[] parts = args[i].split(":");
        if (parts.length != 3) {
          throw new IllegalArgumentException("not TABLE:FAMILY:VERSIONS: " + args[i]);
        }
        specs.add(new Spec(parts[0], parts[1], Integer.parseInt(parts[2])));
      }
    } catch (IllegalArgumentException e) { // NumberFormatException included
      System.err.println("CreateTables: " + e.getMessage());
      System.exit(2);
      return;
    }
    System.exit(create(args[0], specs, splits));
  }

  private static int create(String site, List<Spec> specs, byte[][] splits) {
    Configuration conf = HBaseConfiguration.create();
    conf.addResource(new Path(site));
    // Fail within seconds when HBase is down (the caller backs off and retries), instead of the
    // client's default minutes of retries.
    conf.setInt("hbase.client.retries.number", 3);
    conf.setInt("zookeeper.recovery.retry", 2);
    conf.setInt("zookeeper.recovery.retry.intervalmill", 200);
    try (Connection connection = ConnectionFactory.createConnection(conf);
        Admin admin = connection.getAdmin()) {
      // Both tables at once: the master creates and assigns their regions in parallel.
      List<Future<Void>> pending = new ArrayList<>();
      for (Spec spec : specs) {
        TableDescriptor descriptor =
            TableDescriptorBuilder.newBuilder(TableName.valueOf(spec.table()))
                .setColumnFamily(
                    ColumnFamilyDescriptorBuilder.newBuilder(spec.family().getBytes())
                        .setMaxVersions(spec.versions())
                        .build())
                .build();
        try {
          pending.add(admin.createTableAsync(descriptor, splits));
        } catch (TableExistsException e) {
          pending.add(null); // the check at submission found it
        }
      }
      for (int i = 0; i < specs.size(); i++) {
        String table = specs.get(i).table();
        Future<Void> creation = pending.get(i);
        try {
          if (creation != null) {
            creation.get(WAIT_SECONDS, TimeUnit.SECONDS);
            System.out.println("created " + table);
            continue;
          }
        } catch (ExecutionException e) {
          if (!(e.getCause() instanceof TableExistsException)) {
            return failed(e.getCause() == null ? e : e.getCause());
          }
        }
        System.out.println("exists " + table);
      }
      return 0;
    } catch (TimeoutException e) {
      System.err.println("CreateTables: HBase did not finish in " + WAIT_SECONDS + " s");
      return 4;
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return 4;
    } catch (IOException | IllegalArgumentException e) {
      return failed(e);
    }
  }

  private static int failed(Throwable e) {
    System.err.println("CreateTables: " + e);
    return e instanceof DoNotRetryIOException || e instanceof IllegalArgumentException ? 3 : 4;
  }
}
