// weft's entry point for Spark programs in images that have no shell (weft's own images). It is the
// image's main class for a runnable of kind spark, and knows two roles:
//
//   driver [--conf key=value]... <main class> [program arguments...]
//       sets each --conf as a system property (SparkConf reads spark.* system properties), runs the
//       program's main and exits with its outcome. When the main throws, the exception and the last
//       lines the program printed are written to the container's termination log, so Kubernetes
//       (and weft's status) report them, and the process exits 1.
//
//   driver --properties-file <file> --class <main class> <primary resource> [program arguments...]
//       what `spark-submit --deploy-mode cluster` puts into the driver pod's args (the properties file
//       is mounted from a ConfigMap, SPARK_DRIVER_BIND_ADDRESS is the pod's IP). As Spark's own
//       image's entrypoint.sh does, runs SparkSubmit in client mode inside the pod, here in this JVM,
//       with the same failure report as above.
//
//   executor
//       what Spark's driver puts into every executor pod's args. Starts Spark's Kubernetes executor
//       backend in this JVM, with the arguments Spark's own images build from the pod's environment
//       (SPARK_DRIVER_URL, SPARK_EXECUTOR_ID, ...). -D options of SPARK_JAVA_OPT_<n> become system
//       properties; other JVM options cannot be applied to a running JVM and are reported.
//
// Spark is loaded by reflection, so this class compiles and ships without Spark on the class path.
package io.weft.spark;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.io.PrintStream;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.nio.charset.Charset;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Deque;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

public final class Launcher {
  static final String EXECUTOR_BACKEND = "org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend";
  static final String SPARK_SUBMIT = "org.apache.spark.deploy.SparkSubmit";
  /** The pod's IP, which Spark's cluster mode gives its driver pod (downward API). */
  static final String BIND_ADDRESS_ENV = "SPARK_DRIVER_BIND_ADDRESS";
  static final String PREFIX = "[weft spark] ";
  /** How many of the program's last output lines a failure report carries. */
  static final int LAST_LINES = 3;
  static final int MAX_LINE = 240;
  /** A line of Spark's default console layout at INFO level: "yy/MM/dd HH:mm:ss INFO ...". */
  static final java.util.regex.Pattern SPARK_INFO = java.util.regex.Pattern.compile("^\\d\\d/\\d\\d/\\d\\d \\d\\d:\\d\\d:\\d\\d INFO ");

  private Launcher() {}

  public static void main(String[] args) throws Exception {
    if (args.length == 0) usage("no role given");
    String role = args[0];
    String[] rest = Arrays.copyOfRange(args, 1, args.length);
    if (role.equals("executor")) {
      executor(System.getenv());
    } else if (role.equals("driver")) {
      driver(rest);
    } else {
      usage("unknown role \"" + role + "\"");
    }
  }

  private static void usage(String problem) {
    System.err.println(PREFIX + problem + ": usage: driver [--conf key=value]... <main class> [args...] | executor");
    System.exit(2);
  }

  // ---------------------------------------------------------------------------------------------
  // Driver

  static void driver(String[] args) throws Exception {
    if (args.length > 0 && args[0].equals("--properties-file")) {
      submittedDriver(args, System.getenv());
      return;
    }
    int i = 0;
    while (i < args.length && args[i].equals("--conf")) {
      if (i + 1 >= args.length) usage("--conf needs key=value");
      String pair = args[i + 1];
      int eq = pair.indexOf('=');
      if (eq <= 0) usage("--conf " + pair + " is not key=value");
      System.setProperty(pair.substring(0, eq), pair.substring(eq + 1));
      i += 2;
    }
    if (i >= args.length) usage("no main class given");
    runDriver(args[i], args[i], Arrays.copyOfRange(args, i + 1, args.length));
  }

  /**
   * A driver pod made by `spark-submit --deploy-mode cluster`: runs SparkSubmit in client mode in
   * this JVM with the arguments Spark's own image's entrypoint.sh gives it.
   */
  static void submittedDriver(String[] args, Map<String, String> env) throws Exception {
    String[] submitArgs;
    try {
      submitArgs = clusterModeSubmitArgs(args, env);
    } catch (IllegalArgumentException e) {
      System.err.println(PREFIX + e.getMessage());
      System.exit(2);
      return;
    }
    // Says what runs: the pod's args alone do not show the client-mode settings added here.
    System.err.println(PREFIX + "driver of spark-submit --deploy-mode cluster: " + SPARK_SUBMIT + " " + String.join(" ", submitArgs));
    runDriver(optionValue(args, "--class"), SPARK_SUBMIT, submitArgs);
  }

  /**
   * SparkSubmit's arguments for the driver pod's args (after "driver"): client mode, bound to the
   * pod's address, and the executors told it (as entrypoint.sh does), then the pod's args as they are.
   */
  static String[] clusterModeSubmitArgs(String[] args, Map<String, String> env) {
    if (args.length < 2 || args[1].startsWith("--")) throw new IllegalArgumentException("--properties-file needs a file");
    String mainClass = optionValue(args, "--class");
    if (mainClass == null) {
      throw new IllegalArgumentException("the driver's args name no --class: weft's Spark images run JVM programs only (args: " + String.join(" ", args) + ")");
    }
    String address = env.get(BIND_ADDRESS_ENV);
    if (address == null || address.isEmpty()) {
      throw new IllegalArgumentException(BIND_ADDRESS_ENV + " is not set: spark-submit --deploy-mode cluster gives the driver pod its IP in it; a driver started otherwise takes: driver [--conf key=value]... <main class> [args...]");
    }
    List<String> out = new ArrayList<>();
    out.addAll(List.of("--conf", "spark.driver.bindAddress=" + address));
    out.addAll(List.of("--conf", "spark.executorEnv.SPARK_DRIVER_POD_IP=" + address));
    out.addAll(List.of("--deploy-mode", "client"));
    out.addAll(Arrays.asList(args));
    return out.toArray(new String[0]);
  }

  /** The value after the first `name` among SparkSubmit's options (before the primary resource), or null. */
  static String optionValue(String[] args, String name) {
    for (int i = 0; i + 1 < args.length && args[i].startsWith("--"); i += 2) {
      if (args[i].equals(name)) return args[i + 1];
    }
    return null;
  }

  /**
   * Runs entryClass.main(entryArgs) as the driver: mainClass is the program's main class, which the
   * failure report names (entryClass is it, or SparkSubmit, which runs it).
   */
  static void runDriver(String mainClass, String entryClass, String[] programArgs) throws Exception {
    // Keep the last lines the program (and Spark's console logging, set up later) prints.
    Tail tail = new Tail(LAST_LINES);
    System.setOut(new PrintStream(new TeeStream(System.out, tail), true, Charset.defaultCharset()));
    System.setErr(new PrintStream(new TeeStream(System.err, tail), true, Charset.defaultCharset()));

    Method main;
    try {
      main = Class.forName(entryClass, false, Launcher.class.getClassLoader()).getMethod("main", String[].class);
    } catch (ClassNotFoundException | NoSuchMethodException e) {
      String missing = entryClass.equals(SPARK_SUBMIT) ? "class " + SPARK_SUBMIT + " (the image needs the spark-core jar)" : e instanceof ClassNotFoundException ? "class " + entryClass : "main(String[]) in " + entryClass;
      fail("the driver cannot start: no " + missing + " on the class path", null, tail);
      return;
    }
    try {
      main.invoke(null, (Object) programArgs);
    } catch (InvocationTargetException e) {
      Throwable cause = e.getCause() == null ? e : e.getCause();
      List<String> lastLines = tail.lines(); // before the stack trace below joins them
      cause.printStackTrace();
      System.err.flush();
      stopSparkContext();
      fail("the driver's main (" + mainClass + ") threw " + oneLine(describe(cause)), frameIn(cause, mainClass), lastLines);
      return;
    }
    // A program that forgot sc.stop(): stop it here, so the executors are released before the exit.
    stopSparkContext();
    System.out.flush();
    System.exit(0);
  }

  private static void fail(String what, String where, Tail tail) {
    fail(what, where, tail.lines());
  }

  /** Reports a failed driver on stderr and in the termination log, then ends the JVM with 1. */
  private static void fail(String what, String where, List<String> lastLines) {
    List<String> report = new ArrayList<>();
    report.add(what);
    if (where != null) report.add("at " + where);
    if (!lastLines.isEmpty()) {
      report.add("last output: " + lastLines.get(0));
      for (String line : lastLines.subList(1, lastLines.size())) report.add("  " + line);
    }
    String text = String.join("\n", report);
    String path = System.getenv().getOrDefault("WEFT_TERMINATION_LOG", "/dev/termination-log");
    Path file = Paths.get(path);
    // Only a file that is there already: Kubernetes makes it for every container; elsewhere nothing is created.
    if (Files.isWritable(file)) {
      try {
        byte[] bytes = text.getBytes(StandardCharsets.UTF_8);
        Files.write(file, bytes.length > 4000 ? Arrays.copyOf(bytes, 4000) : bytes);
      } catch (IOException ignored) {
        // The report is on stderr below as well.
      }
    }
    System.err.println(PREFIX + what + (where == null ? "" : " (at " + where + ")"));
    System.err.flush();
    // Halt, not exit: shutdown hooks would log after the report, and the context is stopped already.
    Runtime.getRuntime().halt(1);
  }

  /** The exception and its causes, "Type: message; caused by Type: message". */
  static String describe(Throwable t) {
    StringBuilder out = new StringBuilder(firstLine(t));
    Throwable c = t.getCause();
    for (int depth = 0; c != null && c != t && depth < 4; depth++, t = c, c = c.getCause()) out.append("; caused by ").append(firstLine(c));
    return out.toString();
  }

  /** "Type: message" up to the message's first line (Spark puts whole remote stack traces into messages). */
  static String firstLine(Throwable t) {
    String text = t.toString().strip();
    int nl = text.indexOf('\n');
    if (nl >= 0) text = text.substring(0, nl).strip();
    return text.length() > 400 ? text.substring(0, 400) + "..." : text;
  }

  /** The first stack frame of the program's own code (its main class's package), else the top frame. */
  static String frameIn(Throwable t, String mainClass) {
    int dot = mainClass.lastIndexOf('.');
    String pkg = dot > 0 ? mainClass.substring(0, dot + 1) : mainClass;
    StackTraceElement[] frames = t.getStackTrace();
    for (StackTraceElement f : frames) if (f.getClassName().startsWith(pkg)) return f.toString();
    return frames.length > 0 ? frames[0].toString() : null;
  }

  static String oneLine(String s) {
    String flat = s.replaceAll("\\s*\\R\\s*", " | ").trim();
    return flat.length() > 600 ? flat.substring(0, 600) + "..." : flat;
  }

  /** Stops the active SparkContext, if any (SparkContext.getActive() is a Scala Option). */
  static void stopSparkContext() {
    try {
      Class<?> companion = Class.forName("org.apache.spark.SparkContext$");
      Object module = companion.getField("MODULE$").get(null);
      Object option = companion.getMethod("getActive").invoke(module);
      if ((Boolean) option.getClass().getMethod("isDefined").invoke(option)) {
        Object sc = option.getClass().getMethod("get").invoke(option);
        sc.getClass().getMethod("stop").invoke(sc);
      }
    } catch (ClassNotFoundException e) {
      // Not a Spark program after all: nothing to stop.
    } catch (ReflectiveOperationException | RuntimeException e) {
      System.err.println(PREFIX + "could not stop the SparkContext: " + e);
    }
  }

  /** The last complete lines written to stdout and stderr. */
  static final class Tail {
    private final int keep;
    private final Deque<String> lines = new ArrayDeque<>();

    Tail(int keep) {
      this.keep = keep;
    }

    synchronized void add(String line) {
      String l = line.strip();
      // Stack traces (frames, causes) say nothing the exception itself does not.
      if (l.isEmpty() || l.startsWith("at ") || l.startsWith("...") || l.startsWith("Caused by:") || l.equals("Driver stacktrace:")) return;
      if (SPARK_INFO.matcher(l).find()) return; // Spark's INFO chatter (context start and stop) explains no failure
      if (l.length() > MAX_LINE) l = l.substring(0, MAX_LINE) + "...";
      lines.addLast(l);
      while (lines.size() > keep) lines.removeFirst();
    }

    synchronized List<String> lines() {
      return new ArrayList<>(lines);
    }
  }

  /** Writes through to the original stream and hands each finished line to the tail. */
  static final class TeeStream extends OutputStream {
    private final OutputStream out;
    private final Tail tail;
    private final ByteArrayOutputStream line = new ByteArrayOutputStream();

    TeeStream(OutputStream out, Tail tail) {
      this.out = out;
      this.tail = tail;
    }

    @Override
    public synchronized void write(int b) throws IOException {
      out.write(b);
      collect(b);
    }

    @Override
    public synchronized void write(byte[] b, int off, int len) throws IOException {
      out.write(b, off, len);
      for (int i = off; i < off + len; i++) collect(b[i]);
    }

    private void collect(int b) {
      if (b == '\n') {
        tail.add(line.toString(Charset.defaultCharset()));
        line.reset();
      } else if (line.size() < 4 * MAX_LINE) {
        line.write(b);
      }
    }

    @Override
    public void flush() throws IOException {
      out.flush();
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Executor

  static void executor(Map<String, String> env) throws Exception {
    // Spark passes the executor's JVM options as SPARK_JAVA_OPT_0, _1, ... in order.
    Map<Integer, String> options = new TreeMap<>();
    for (Map.Entry<String, String> e : env.entrySet()) {
      if (e.getKey().startsWith("SPARK_JAVA_OPT_")) {
        try {
          options.put(Integer.parseInt(e.getKey().substring("SPARK_JAVA_OPT_".length())), e.getValue());
        } catch (NumberFormatException ignored) {
          // not one of Spark's
        }
      }
    }
    // Options the image's entry point (or JAVA_TOOL_OPTIONS) gave this JVM already are in force.
    java.util.Set<String> applied = new java.util.HashSet<>(java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments());
    List<String> ignored = new ArrayList<>();
    for (String option : options.values()) {
      if (option.startsWith("-D") && option.indexOf('=') > 2) {
        int eq = option.indexOf('=');
        System.setProperty(option.substring(2, eq), option.substring(eq + 1));
      } else if (!option.isEmpty() && !applied.contains(option)) {
        ignored.add(option);
      }
    }
    if (!ignored.isEmpty()) {
      System.err.println(PREFIX + "the executor runs in the image's JVM, which cannot take these JVM options now (bake them into the image, or pass JAVA_TOOL_OPTIONS with spark.executorEnv.JAVA_TOOL_OPTIONS): " + String.join(" ", ignored));
    }
    List<String> argv = new ArrayList<>();
    String[][] wanted = {
      {"--driver-url", "SPARK_DRIVER_URL"},
      {"--executor-id", "SPARK_EXECUTOR_ID"},
      {"--cores", "SPARK_EXECUTOR_CORES"},
      {"--app-id", "SPARK_APPLICATION_ID"},
      {"--hostname", "SPARK_EXECUTOR_POD_IP"},
      {"--resourceProfileId", "SPARK_RESOURCE_PROFILE_ID"},
      {"--podName", "SPARK_EXECUTOR_POD_NAME"},
    };
    List<String> missing = new ArrayList<>();
    for (String[] w : wanted) {
      String value = env.get(w[1]);
      if (value == null || value.isEmpty()) {
        if (!w[1].equals("SPARK_RESOURCE_PROFILE_ID") && !w[1].equals("SPARK_EXECUTOR_POD_NAME")) missing.add(w[1]);
        continue;
      }
      if (w[1].equals("SPARK_EXECUTOR_POD_IP") && value.contains(":") && !value.startsWith("[")) value = "[" + value + "]";
      argv.add(w[0]);
      argv.add(value);
    }
    if (!missing.isEmpty()) {
      System.err.println(PREFIX + "\"executor\" is started by a Spark driver, which sets " + String.join(", ", missing) + " in the pod's environment; they are missing");
      System.exit(2);
    }
    Class<?> backend;
    try {
      backend = Class.forName(EXECUTOR_BACKEND, true, Launcher.class.getClassLoader());
    } catch (ClassNotFoundException e) {
      System.err.println(PREFIX + EXECUTOR_BACKEND + " is not on the class path: the image needs the spark-kubernetes jar");
      System.exit(2);
      return;
    }
    Method main = backend.getMethod("main", String[].class);
    try {
      main.invoke(null, (Object) argv.toArray(new String[0]));
    } catch (InvocationTargetException e) {
      throw e.getCause() instanceof Exception ? (Exception) e.getCause() : e;
    }
  }
}
