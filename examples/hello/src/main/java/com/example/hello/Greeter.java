package com.example.hello;

import java.util.List;
import org.apache.commons.lang3.StringUtils;

/** Builds the greeting line with commons-lang3. */
final class Greeter {
    private final String greeting;

    Greeter(String greeting) {
        this.greeting = greeting;
    }

    String greet(String name, List<String> words) {
        String who = StringUtils.capitalize(StringUtils.defaultIfBlank(StringUtils.trim(name), "nobody"));
        return greeting + ": " + who + " " + StringUtils.repeat('*', words.size() + 1);
    }
}
