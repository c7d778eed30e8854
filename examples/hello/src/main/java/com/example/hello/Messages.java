package com.example.hello;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.util.Properties;

/** Reads messages.properties from the classpath (the image's resources layer). */
final class Messages {
    private final Properties properties;

    private Messages(Properties properties) {
        this.properties = properties;
    }

    static Messages load() {
        Properties properties = new Properties();
        try (InputStream in = Messages.class.getResourceAsStream("messages.properties")) {
            if (in == null) {
                throw new IllegalStateException("resource com/example/hello/messages.properties is missing from the classpath");
            }
            properties.load(in);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return new Messages(properties);
    }

    String get(String key) {
        String value = properties.getProperty(key);
        if (value == null) {
            throw new IllegalStateException("message " + key + " is missing");
        }
        return value;
    }
}
