package com.example.launcher;

import java.io.InputStream;
import java.lang.reflect.Method;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Enumeration;
import java.util.List;
import java.util.jar.JarEntry;
import java.util.jar.JarFile;

/**
 * A minimal Spring-Boot-style launcher so the fat jar runs with `java -jar`:
 * application classes live under BOOT-INF/classes/, dependency jars under
 * BOOT-INF/lib/, and the real main class is named by the manifest's
 * Start-Class. Nested jars are copied to a temporary directory (the JDK cannot
 * open a jar inside a jar) and everything is put on a fresh class loader.
 * When weft builds an image from this jar it splits it instead, and this
 * launcher is not used.
 */
public final class JarLauncher {
    private JarLauncher() {}

    public static void main(String[] args) throws Exception {
        Path self = Paths.get(JarLauncher.class.getProtectionDomain().getCodeSource().getLocation().toURI());
        List<URL> urls = new ArrayList<>();
        urls.add(new URL("jar:" + self.toUri() + "!/BOOT-INF/classes/"));
        String startClass;
        Path libs = Files.createTempDirectory("fatjar-libs");
        try (JarFile jar = new JarFile(self.toFile())) {
            startClass = jar.getManifest().getMainAttributes().getValue("Start-Class");
            if (startClass == null) {
                throw new IllegalStateException(self + " has no Start-Class in its manifest");
            }
            List<JarEntry> nested = new ArrayList<>();
            for (Enumeration<JarEntry> e = jar.entries(); e.hasMoreElements();) {
                JarEntry entry = e.nextElement();
                if (!entry.isDirectory() && entry.getName().startsWith("BOOT-INF/lib/") && entry.getName().endsWith(".jar")) {
                    nested.add(entry);
                }
            }
            nested.sort((a, b) -> a.getName().compareTo(b.getName()));
            for (JarEntry entry : nested) {
                Path target = libs.resolve(entry.getName().substring("BOOT-INF/lib/".length()));
                try (InputStream in = jar.getInputStream(entry)) {
                    Files.copy(in, target, StandardCopyOption.REPLACE_EXISTING);
                }
                target.toFile().deleteOnExit();
                urls.add(target.toUri().toURL());
            }
        }
        libs.toFile().deleteOnExit();
        ClassLoader loader = new URLClassLoader(urls.toArray(new URL[0]), JarLauncher.class.getClassLoader().getParent());
        Thread.currentThread().setContextClassLoader(loader);
        Method main = Class.forName(startClass, true, loader).getMethod("main", String[].class);
        main.invoke(null, (Object) args);
    }
}
