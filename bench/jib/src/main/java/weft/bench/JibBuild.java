package weft.bench;

import com.google.cloud.tools.jib.api.Containerizer;
import com.google.cloud.tools.jib.api.Jib;
import com.google.cloud.tools.jib.api.JibContainer;
import com.google.cloud.tools.jib.api.RegistryImage;
import com.google.cloud.tools.jib.api.TarImage;
import com.google.cloud.tools.jib.api.buildplan.AbsoluteUnixPath;
import com.google.cloud.tools.jib.api.buildplan.ImageFormat;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.List;
import java.util.stream.Collectors;
import java.util.stream.Stream;

/**
 * The Jib side of bench/build-sizes.sh and bench/build-push.sh: builds the example
 * program on the same base as weft and buildah, with Jib's layering (dependencies,
 * resources, classes), and writes the image as a tar or pushes it to a registry
 * (plain HTTP allowed, as weft's --insecure-registry). Prints the image digest.
 *
 * <p>Usage: JibBuild BASE_TAR PROGRAM_DIR DEPS_DIR OUT CACHE_DIR, where PROGRAM_DIR
 * holds classes/ and resources/ (the program exploded as a build tool has it), OUT is
 * a tar file or docker://host:port/repository:tag, and CACHE_DIR is Jib's base and
 * application layer cache (empty for a cold build).
 */
public final class JibBuild {
  public static void main(String[] args) throws Exception {
    if (args.length != 5) {
      System.err.println("usage: JibBuild BASE_TAR PROGRAM_DIR DEPS_DIR OUT_TAR|docker://REF CACHE_DIR");
      System.exit(2);
    }
    Path base = Paths.get(args[0]);
    Path program = Paths.get(args[1]);
    Path deps = Paths.get(args[2]);
    String out = args[3];
    Path cache = Paths.get(args[4]);
    List<Path> jars;
    try (Stream<Path> files = Files.list(deps)) {
      jars = files.filter(p -> p.toString().endsWith(".jar")).sorted().collect(Collectors.toList());
    }
    AbsoluteUnixPath app = AbsoluteUnixPath.get("/app");
    JibContainer container =
        Jib.from(TarImage.at(base).named("base:jre"))
            .addLayer(jars, app.resolve("libs"))
            .addLayer(List.of(program.resolve("resources")), app)
            .addLayer(List.of(program.resolve("classes")), app)
            .setEntrypoint("java", "-cp", "/app/resources:/app/classes:/app/libs/*", "com.example.hello.Main")
            .setFormat(ImageFormat.OCI)
            .containerize(
                containerizer(out)
                    .setBaseImageLayersCache(cache.resolve("base"))
                    .setApplicationLayersCache(cache.resolve("application")));
    System.out.println(container.getDigest());
  }

  private static Containerizer containerizer(String out) throws Exception {
    if (out.startsWith("docker://")) {
      return Containerizer.to(RegistryImage.named(out.substring("docker://".length()))).setAllowInsecureRegistries(true);
    }
    return Containerizer.to(TarImage.at(Paths.get(out)).named("hello:latest"));
  }
}
