# Shared by kafka.sh and hbase.sh (sourced after lib.sh): the runtime jars of a pom in
# deploy/jvm/<name>/, copied from Maven Central into the cache once per version of the pom.

jvm_lib_parent() {  # name -> the cache folder of this pom's version
  printf '%s/jvm/%s/%s\n' "$CACHE_DIR" "$1" "$(sha256sum "$DEPLOY_DIR/jvm/$1/pom.xml" | cut -c1-16)"
}

# Copy the pom's runtime classpath into the cache once; a complete folder is never touched again.
jvm_install() {  # name title
  local parent lib marker
  parent=$(jvm_lib_parent "$1")
  lib="$parent/lib"
  marker="$parent/complete"
  if [[ -f "$marker" ]] && [[ -d "$lib" ]]; then
    log "$1 jars present in $lib"
    return 0
  fi
  command -v mvn >/dev/null || die "mvn not found (Maven 3.8+ is needed to fetch the $2 jars: deploy/install-system.sh installs it)"
  command -v "$JAVA" >/dev/null || die "java not found (Java 17 is needed: deploy/install-system.sh installs openjdk-17-jre-headless)"
  log "fetching $1 jars from Maven Central into $lib"
  rm -rf "$lib"
  mkdir -p "$parent"
  local mvnlog="$parent/mvn.log"
  if ! (cd "$DEPLOY_DIR/jvm/$1" && mvn -B -q -Dmaven.repo.local="$CACHE_DIR/jvm/m2" \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$lib") \
      >"$mvnlog" 2>&1; then
    tail -n 30 "$mvnlog" >&2
    die "mvn could not fetch the $1 jars (log above, full log $mvnlog)"
  fi
  check_one_slf4j_binding "$lib"
  touch "$marker"
  log "$1 jars installed ($(find "$lib" -name '*.jar' | wc -l) jars)"
}

# Exactly one SLF4J 1.x binding (StaticLoggerBinder) or 2.x provider may be on the classpath.
check_one_slf4j_binding() {
  local dir=$1 bindings=()
  mapfile -t bindings < <("$VENV_DIR/bin/python" -c '
import pathlib, sys, zipfile
marks = {"org/slf4j/impl/StaticLoggerBinder.class",
         "META-INF/services/org.slf4j.spi.SLF4JServiceProvider"}
for jar in sorted(pathlib.Path(sys.argv[1]).glob("*.jar")):
    if marks & set(zipfile.ZipFile(jar).namelist()):
        print(jar.name)
' "$dir")
  (( ${#bindings[@]} == 1 )) \
    || die "expected exactly one SLF4J binding in $dir, found ${#bindings[@]}: ${bindings[*]:-none}"
}
