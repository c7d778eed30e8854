package com.example.spark;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import org.apache.spark.SparkConf;
import org.apache.spark.api.java.JavaSparkContext;
import scala.Tuple2;

/**
 * Counts the words of a text file (read by the driver, counted by the executors, with a shuffle
 * between them) and prints one "word<TAB>count" line per word, most frequent first.
 * Usage: WordCount <file> [partitions]   (default 2 partitions)
 */
public final class WordCount {
  private WordCount() {}

  public static void main(String[] args) throws IOException {
    if (args.length < 1) throw new IllegalArgumentException("usage: WordCount <file> [partitions]");
    int partitions = args.length > 1 ? Integer.parseInt(args[1]) : 2;
    try (JavaSparkContext sc = new JavaSparkContext(new SparkConf().setAppName("WordCount"))) {
      List<String> lines = Files.readAllLines(Paths.get(args[0]), StandardCharsets.UTF_8);
      List<Tuple2<String, Integer>> counts = new ArrayList<>(
          sc.parallelize(lines, partitions)
              .flatMap(line -> Arrays.asList(line.toLowerCase(Locale.ROOT).split("[^\\p{L}\\p{N}']+")).iterator())
              .filter(word -> !word.isEmpty())
              .mapToPair(word -> new Tuple2<>(word, 1))
              .reduceByKey(Integer::sum, partitions)
              .collect());
      counts.sort((a, b) -> a._2().equals(b._2()) ? a._1().compareTo(b._1()) : b._2() - a._2());
      int total = counts.stream().mapToInt(Tuple2::_2).sum();
      System.out.println("word counts of " + args[0] + ": " + counts.size() + " distinct, " + total + " in all");
      for (Tuple2<String, Integer> c : counts) System.out.println(c._1() + "\t" + c._2());
    }
  }
}
