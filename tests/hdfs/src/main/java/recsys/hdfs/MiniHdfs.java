package recsys.hdfs;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Map;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.hdfs.HdfsConfiguration;
import org.apache.hadoop.hdfs.MiniDFSCluster;

/**
 * A real HDFS in one JVM for the tests: a NameNode and DataNodes (MiniDFSCluster), on loopback.
 *
 * <p>Usage: {@code MiniHdfs <base-dir> <namenode-port> <datanodes>}. Prints {@code READY hdfs://127.0.0.1:<port>}
 * once the cluster is up, then obeys one command per line on stdin and answers {@code OK <command>} (or
 * {@code ERROR <message>}): {@code stop-namenode}, {@code start-namenode}, {@code stop-datanode <i>},
 * {@code start-datanode <i>}, {@code shutdown}. End of input also shuts down, so the cluster never outlives the
 * test process that started it.
 */
public final class MiniHdfs {
    private MiniHdfs() {
    }

    public static void main(String[] args) throws Exception {
        String baseDir = args[0];
        int nameNodePort = Integer.parseInt(args[1]);
        int dataNodes = Integer.parseInt(args[2]);

        Configuration conf = new HdfsConfiguration();
        conf.set(MiniDFSCluster.HDFS_MINIDFS_BASEDIR, baseDir);
        conf.setInt("dfs.replication", Math.min(2, dataNodes));
        // Notice a stopped DataNode within seconds rather than the default ten minutes.
        conf.setInt("dfs.heartbeat.interval", 1);
        conf.setInt("dfs.namenode.heartbeat.recheck-interval", 2000);
        conf.setInt("dfs.namenode.safemode.extension", 0);

        MiniDFSCluster cluster = new MiniDFSCluster.Builder(conf)
                .nameNodePort(nameNodePort)
                .numDataNodes(dataNodes)
                .format(true)
                .build();
        cluster.waitActive();
        System.out.println("READY hdfs://127.0.0.1:" + cluster.getNameNodePort());
        System.out.flush();

        Map<Integer, MiniDFSCluster.DataNodeProperties> stopped = new HashMap<>();
        BufferedReader commands = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = commands.readLine()) != null) {
            String[] words = line.trim().split("\\s+");
            try {
                switch (words[0]) {
                    case "stop-namenode" -> cluster.shutdownNameNode(0);
                    case "start-namenode" -> cluster.restartNameNode(0, true);
                    case "stop-datanode" -> {
                        int index = Integer.parseInt(words[1]);
                        stopped.put(index, cluster.stopDataNode(index));
                    }
                    case "start-datanode" -> {
                        int index = Integer.parseInt(words[1]);
                        cluster.restartDataNode(stopped.remove(index), true);
                        cluster.waitActive();
                    }
                    case "shutdown" -> {
                        cluster.shutdown();
                        System.out.println("OK shutdown");
                        return;
                    }
                    default -> throw new IllegalArgumentException("unknown command: " + line);
                }
                System.out.println("OK " + line.trim());
            } catch (Exception error) {
                System.out.println("ERROR " + error.toString().replace('\n', ' '));
            }
            System.out.flush();
        }
        cluster.shutdown();
    }
}
