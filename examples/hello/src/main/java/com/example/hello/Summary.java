package com.example.hello;

import com.google.common.base.Joiner;
import com.google.common.collect.ImmutableSortedSet;
import com.google.common.hash.Hashing;
import java.nio.charset.StandardCharsets;
import java.util.List;

/** Summarises the arguments with guava: sorted, de-duplicated, and a stable checksum. */
final class Summary {
    private Summary() {}

    static String describe(List<String> words) {
        ImmutableSortedSet<String> sorted = ImmutableSortedSet.copyOf(words);
        String joined = Joiner.on(',').join(sorted);
        @SuppressWarnings("deprecation")
        String crc = Hashing.crc32().hashString(joined, StandardCharsets.UTF_8).toString();
        return "args=[" + joined + "] crc32=" + crc + " java=" + Runtime.version().feature();
    }
}
