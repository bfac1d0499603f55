/*
 * A plain GetRecords reader on the HTTP client KCL itself uses: the AWS SDK for Java v2's
 * KinesisAsyncClient on Netty over HTTP/2 (CBOR, as the SDK defaults), with KCL's settings
 * (unbounded concurrency, a 512 KiB initial window), one thread per shard, blocking on each call as
 * KCL's prefetcher threads do. No KCL: what this reads is the stand-in's own limit for KCL's client.
 *
 * Run by bench/kinesis_sdk_reader.py with the jars amazon-kclpy installed on the class path:
 *   java -cp "<jars>/*" SdkReader.java ENDPOINT REGION STREAM LIMIT ROUNDS SHARD=COUNT[@AFTER_SEQUENCE]...
 * Reads every round from the same positions; round 0 warms the JVM up (its figure is printed but not
 * the one used). Prints one JSON line per round: {"round": r, "records": n, "seconds": s, "calls": c}.
 * Credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
 */

import java.net.URI;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import software.amazon.awssdk.auth.credentials.AwsBasicCredentials;
import software.amazon.awssdk.auth.credentials.StaticCredentialsProvider;
import software.amazon.awssdk.http.Protocol;
import software.amazon.awssdk.http.nio.netty.Http2Configuration;
import software.amazon.awssdk.http.nio.netty.NettyNioAsyncHttpClient;
import software.amazon.awssdk.regions.Region;
import software.amazon.awssdk.services.kinesis.KinesisAsyncClient;
import software.amazon.awssdk.services.kinesis.model.GetRecordsResponse;
import software.amazon.awssdk.services.kinesis.model.GetShardIteratorRequest;
import software.amazon.awssdk.services.kinesis.model.ShardIteratorType;

public final class SdkReader {
    private static final int KCL_INITIAL_WINDOW_BYTES = 512 * 1024;
    private static final long TIMEOUT_SECONDS = 300;

    private record Shard(String id, int expected, String after) {}

    public static void main(String[] args) throws Exception {
        if (args.length < 6) {
            throw new IllegalArgumentException("ENDPOINT REGION STREAM LIMIT ROUNDS SHARD=COUNT[@AFTER]...");
        }
        String endpoint = args[0];
        String region = args[1];
        String stream = args[2];
        int limit = Integer.parseInt(args[3]);
        int rounds = Integer.parseInt(args[4]);
        List<Shard> shards = new ArrayList<>();
        for (int i = 5; i < args.length; i++) {
            String[] idAndRest = args[i].split("=", 2);
            String[] countAndAfter = idAndRest[1].split("@", 2);
            shards.add(new Shard(idAndRest[0], Integer.parseInt(countAndAfter[0]),
                    countAndAfter.length > 1 ? countAndAfter[1] : null));
        }
        try (KinesisAsyncClient client = KinesisAsyncClient.builder()
                .endpointOverride(URI.create(endpoint))
                .region(Region.of(region))
                .credentialsProvider(StaticCredentialsProvider.create(AwsBasicCredentials.create(
                        System.getenv("AWS_ACCESS_KEY_ID"), System.getenv("AWS_SECRET_ACCESS_KEY"))))
                .httpClientBuilder(NettyNioAsyncHttpClient.builder()
                        .maxConcurrency(Integer.MAX_VALUE)
                        .http2Configuration(Http2Configuration.builder()
                                .initialWindowSize(KCL_INITIAL_WINDOW_BYTES)
                                .healthCheckPingPeriod(Duration.ofMinutes(1))
                                .build())
                        .protocol(Protocol.HTTP2))
                .build()) {
            client.describeStreamSummary(b -> b.streamName(stream)).get(); // connect before the clock starts
            ExecutorService pool = Executors.newFixedThreadPool(shards.size());
            try {
                for (int round = 0; round < rounds; round++) {
                    readOnce(client, pool, stream, limit, shards, round);
                }
            } finally {
                pool.shutdownNow();
            }
        }
    }

    private static void readOnce(KinesisAsyncClient client, ExecutorService pool, String stream, int limit,
            List<Shard> shards, int round) throws Exception {
        CountDownLatch start = new CountDownLatch(1);
        AtomicInteger calls = new AtomicInteger();
        List<Future<Integer>> done = new ArrayList<>();
        for (Shard shard : shards) {
            done.add(pool.submit(() -> {
                start.await();
                GetShardIteratorRequest.Builder request = GetShardIteratorRequest.builder()
                        .streamName(stream).shardId(shard.id());
                if (shard.after() != null) {
                    request.shardIteratorType(ShardIteratorType.AFTER_SEQUENCE_NUMBER)
                            .startingSequenceNumber(shard.after());
                } else {
                    request.shardIteratorType(ShardIteratorType.TRIM_HORIZON);
                }
                String iterator = client.getShardIterator(request.build())
                        .get(TIMEOUT_SECONDS, TimeUnit.SECONDS).shardIterator();
                int got = 0;
                while (got < shard.expected()) {
                    final String current = iterator;
                    GetRecordsResponse page = client.getRecords(b -> b.shardIterator(current).limit(limit))
                            .get(TIMEOUT_SECONDS, TimeUnit.SECONDS);
                    calls.incrementAndGet();
                    got += page.records().size();
                    iterator = page.nextShardIterator();
                    if (page.records().isEmpty()) {
                        Thread.sleep(10);
                    }
                }
                return got;
            }));
        }
        long began = System.nanoTime();
        start.countDown();
        int records = 0;
        for (Future<Integer> shard : done) {
            records += shard.get(TIMEOUT_SECONDS, TimeUnit.SECONDS);
        }
        double seconds = (System.nanoTime() - began) / 1e9;
        System.out.printf("{\"round\": %d, \"records\": %d, \"seconds\": %.4f, \"calls\": %d}%n",
                round, records, seconds, calls.get());
        System.out.flush();
    }
}
