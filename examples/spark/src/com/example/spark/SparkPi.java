package com.example.spark;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.TreeSet;
import org.apache.spark.SparkConf;
import org.apache.spark.SparkEnv;
import org.apache.spark.api.java.JavaSparkContext;
import scala.Tuple2;

/**
 * Estimates pi by throwing random points at the unit square, in `slices` tasks of POINTS points
 * each, and prints "Pi is roughly ..." and which executors ran the tasks.
 * Usage: SparkPi [slices]   (default 4)
 */
public final class SparkPi {
  static final int POINTS = 200_000;

  private SparkPi() {}

  public static void main(String[] args) {
    int slices = args.length > 0 ? Integer.parseInt(args[0]) : 4;
    if (slices < 1) throw new IllegalArgumentException("slices must be at least 1, got " + slices);
    List<Integer> seeds = new ArrayList<>();
    for (int i = 0; i < slices; i++) seeds.add(i);
    try (JavaSparkContext sc = new JavaSparkContext(new SparkConf().setAppName("SparkPi"))) {
      // Each task counts its hits and says where it ran (the driver, "driver", in local mode).
      List<Tuple2<String, Long>> parts = sc.parallelize(seeds, slices).map(seed -> {
        SplittableRandom random = new SplittableRandom(seed * 7919L + 17);
        long inside = 0;
        for (int i = 0; i < POINTS; i++) {
          double x = random.nextDouble() * 2 - 1;
          double y = random.nextDouble() * 2 - 1;
          if (x * x + y * y <= 1) inside++;
        }
        return new Tuple2<>(SparkEnv.get().executorId(), inside);
      }).collect();
      long inside = 0;
      TreeSet<String> executors = new TreeSet<>();
      for (Tuple2<String, Long> p : parts) {
        inside += p._2();
        executors.add(p._1());
      }
      System.out.println("Pi is roughly " + 4.0 * inside / ((long) slices * POINTS));
      System.out.println("tasks ran on executors " + executors);
    }
  }
}
