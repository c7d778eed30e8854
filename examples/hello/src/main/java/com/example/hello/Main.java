package com.example.hello;

import java.util.Arrays;
import java.util.List;

/**
 * The weft example program. Prints one deterministic line built with both
 * third-party libraries (commons-lang3 and guava), from its arguments, the
 * environment variable HELLO_NAME and a resource file, so a test can tell
 * that classes, resources and dependency jars all made it into the image.
 */
public final class Main {
    private Main() {}

    public static void main(String[] args) {
        Messages messages = Messages.load();
        String name = System.getenv().getOrDefault("HELLO_NAME", messages.get("default.name"));
        List<String> words = Arrays.asList(args);
        Greeter greeter = new Greeter(messages.get("greeting"));
        System.out.println(greeter.greet(name, words));
        System.out.println(Summary.describe(words));
    }
}
