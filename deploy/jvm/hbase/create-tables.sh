#!/usr/bin/env bash
# Creates HBase tables pre-split at given keys, with HBase's own Admin API (CreateTables.java)
# on the jars deploy/hbase.sh installs: happybase's Thrift 1 createTable cannot split. Its one
# caller is newcore's ensure_tables (the updater's start, chat-read-model-init, tests, bench);
# why, and what it costs: newcore/README.md, "HBase layout".
#   deploy/jvm/hbase/create-tables.sh SPLITS TABLE:FAMILY:VERSIONS...
# The cluster is the one $HBASE_CONF_DIR/hbase-site.xml names, by default the configuration
# deploy/hbase.sh writes for the local stack ($STATE_DIR/hbase/conf). Exit codes: those of
# CreateTables.java; 3 also when the jars, the configuration or java are missing.
#
# A JVM loading the HBase client costs seconds of CPU. So the tool is built once per version of
# its source and of this script, into the jars' cache folder: a jar, and a class-data-sharing
# archive of the classes it loads (written by its first run) that halves the CPU of later starts.
source "$(dirname "${BASH_SOURCE[0]}")/../../lib.sh"
source "$DEPLOY_DIR/jvm-lib.sh"

JAVA="${JAVA:-java}"
HERE="$DEPLOY_DIR/jvm/hbase"
LIB_PARENT="$(jvm_lib_parent hbase)"
SITE="${HBASE_CONF_DIR:-$STATE_DIR/hbase/conf}/hbase-site.xml"

refuse() { printf 'create-tables: %s\n' "$*" >&2; exit 3; }

[[ -f "$LIB_PARENT/complete" ]] || refuse "no HBase jars in $LIB_PARENT/lib: run deploy/hbase.sh install"
[[ -f "$SITE" ]] || refuse "no HBase client configuration at $SITE: start HBase with deploy/hbase.sh, or set HBASE_CONF_DIR"
command -v "$JAVA" >/dev/null || refuse "java not found (Java 17: deploy/install-system.sh installs it)"

# Class-data sharing needs a classpath of jars only, the same on every run.
LIB_JARS="$(printf '%s:' "$LIB_PARENT"/lib/*.jar)"
LIB_JARS="${LIB_JARS%:}"
TOOL_DIR="$LIB_PARENT/tools/$(cat "$HERE/CreateTables.java" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)"
if [[ ! -f "$TOOL_DIR/create-tables.jar" ]]; then
  mkdir -p "$LIB_PARENT/tools"
  build=$(mktemp -d "$LIB_PARENT/tools/.build.XXXXXX")
  chmod 755 "$build"
  # The compiler and jar tool of the Java runtime itself (its image has their modules; Debian's
  # openjdk-17-jre-headless has no javac or jar command).
  { "$JAVA" -m jdk.compiler/com.sun.tools.javac.Main -nowarn -cp "$LIB_JARS" \
      -d "$build/classes" "$HERE/CreateTables.java" \
    && "$JAVA" -m jdk.jartool/sun.tools.jar.Main cf "$build/create-tables.jar" -C "$build/classes" . ; \
  } >&2 \
    || { rm -rf "$build"; refuse "CreateTables.java does not build against $LIB_PARENT/lib"; }
  rm -rf "$build/classes"
  # Another run building at the same time may have won: its jar is the same.
  mv -T "$build" "$TOOL_DIR" 2>/dev/null || rm -rf "$build"
fi

CLASSPATH_JARS="$TOOL_DIR/create-tables.jar:$LIB_JARS"
ARCHIVE="$TOOL_DIR/create-tables.jsa"
if [[ -f "$ARCHIVE" ]]; then
  SHARING=("-XX:SharedArchiveFile=$ARCHIVE")
else
  SHARING=("-XX:ArchiveClassesAtExit=$ARCHIVE.$$")  # renamed below once complete
fi

# A short-lived client: small heap, no optimising JIT, no JVM log lines on stdout; the module
# flags of HBase's bin/hbase that its client needs on JDK 17 (unsafe access, shaded netty).
status=0
"$JAVA" -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xlog:disable -Xlog:all=error:stderr \
  "${SHARING[@]}" -Djava.net.preferIPv4Stack=true \
  --add-opens java.base/java.nio=ALL-UNNAMED \
  --add-opens java.base/sun.nio.ch=ALL-UNNAMED \
  --add-opens java.base/java.lang=ALL-UNNAMED \
  --add-opens java.base/jdk.internal.ref=ALL-UNNAMED \
  --add-opens java.base/java.lang.reflect=ALL-UNNAMED \
  --add-exports java.base/jdk.internal.misc=ALL-UNNAMED \
  -Dorg.apache.hbase.thirdparty.io.netty.tryReflectionSetAccessible=true \
  "-Dlog4j2.configurationFile=file:$HERE/log4j2-tool.properties" \
  -cp "$CLASSPATH_JARS" CreateTables "$SITE" "$@" || status=$?
if [[ -f "$ARCHIVE.$$" ]]; then  # only a run that did its work loaded every class it needs
  (( status == 0 )) && mv -n "$ARCHIVE.$$" "$ARCHIVE"
  rm -f "$ARCHIVE.$$"
fi
exit "$status"
