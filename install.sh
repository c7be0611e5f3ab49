#!/bin/sh
# Installs tug as a service, as k3s's installer does:
#
#   curl -sfL https://<host>/install.sh | sh -                                  # a server
#   curl -sfL https://<host>/install.sh | TUG_URL=https://server:6443 TUG_TOKEN=... sh -   # an agent
#   curl -sfL https://<host>/install.sh | sh -s - server --disable-agent         # flags for tug
#
# Every TUG_* variable in the environment goes to the service's environment file (0600), where tug reads
# it as the flag of the same name. The installer's own variables:
#   INSTALL_TUG_VERSION        release to install (default: latest)
#   INSTALL_TUG_DOWNLOAD_URL   where releases are: <url>/<version>/tug-<arch> and
#                              <url>/<version>/sha256sum-<arch>.txt (default: the project's GitHub releases)
#   INSTALL_TUG_BINARY         a local tug binary (a path or file:// URL) instead of a download (air gap)
#   INSTALL_TUG_SKIP_DOWNLOAD  true: use the tug already in the bin dir
#   INSTALL_TUG_SKIP_DEPS      true: do not install containerd, runc, the CNI plugins and iptables
#   INSTALL_TUG_SKIP_ENABLE    true: do not enable or start the service
#   INSTALL_TUG_SKIP_START     true: do not start the service
#   INSTALL_TUG_EXEC           command and flags for tug (before the script's own arguments)
#   INSTALL_TUG_NAME           service name suffix: tug-<name> (default: tug, or tug-agent for an agent)
#   INSTALL_TUG_BIN_DIR        where tug and the scripts go (default /usr/local/bin, else /opt/bin)
#   INSTALL_TUG_SYSTEMD_DIR    where the unit goes (default /etc/systemd/system)
#   INSTALL_TUG_SYMLINK        skip: no kubectl link; force: replace one (default: link if none there)
set -e
set -o noglob

GITHUB_URL=https://github.com/tug-k8s/tug/releases

info() { echo "[INFO]  $*"; }
warn() { echo "[WARN]  $*" >&2; }
fatal() {
    echo "[ERROR] $*" >&2
    exit 1
}

# --- the command line: tug's command and flags -------------------------------------------------------
setup_command() {
    # INSTALL_TUG_EXEC is split into words on purpose: it holds several flags.
    # shellcheck disable=SC2086
    set -- ${INSTALL_TUG_EXEC} "$@"
    case "$1" in
        server | agent)
            CMD_TUG=$1
            shift
            ;;
        *)
            if [ -n "${TUG_URL}" ]; then CMD_TUG=agent; else CMD_TUG=server; fi
            ;;
    esac
    if [ "${CMD_TUG}" = agent ] && [ -n "${TUG_URL}" ] && [ -z "${TUG_TOKEN}${TUG_TOKEN_FILE}" ]; then
        fatal "TUG_URL is set for an agent, but neither TUG_TOKEN nor TUG_TOKEN_FILE is"
    fi
    NEEDS_RUNTIME=true
    case "${TUG_DISABLE_AGENT}" in '' | 0 | n | no | f | false | off) ;; *) NEEDS_RUNTIME=false ;; esac
    DATA_DIR=${TUG_DATA_DIR:-/var/lib/tug}
    ARGS_SYSTEMD=
    ARGS_SH=
    previous=
    for arg in "$@"; do
        case "${arg}" in
            --disable-agent | --disable-agent=true) NEEDS_RUNTIME=false ;;
            --data-dir=*) DATA_DIR=${arg#--data-dir=} ;;
        esac
        case "${previous}" in --data-dir | -d) DATA_DIR=${arg} ;; esac
        previous=${arg}
        case "${arg}" in *"'"*) fatal "an argument holds a single quote, which the service file cannot keep: ${arg}" ;; esac
        # systemd's specifiers and variables are doubled to stay literal; double quotes and backslashes escaped.
        escaped=$(printf '%s' "${arg}" | sed -e 's/[\\"]/\\&/g; s/%/%%/g; s/\$/$$/g')
        ARGS_SYSTEMD="${ARGS_SYSTEMD} \"${escaped}\""
        ARGS_SH="${ARGS_SH} '${arg}'"
    done
    while [ "${DATA_DIR}" != / ] && [ "${DATA_DIR%/}" != "${DATA_DIR}" ]; do DATA_DIR=${DATA_DIR%/}; done
    case "${DATA_DIR}" in
        / | *//* | */./* | */../* | */. | */.. | *[!a-zA-Z0-9_./-]*)
            fatal "the data dir ${DATA_DIR} must be a plain absolute path (letters, digits and ._-/), not /"
            ;;
        /*) ;;
        *) fatal "the data dir ${DATA_DIR} must be an absolute path" ;;
    esac
}

# --- where things go ---------------------------------------------------------------------------------
setup_paths() {
    if [ -n "${INSTALL_TUG_NAME}" ]; then
        SYSTEM_NAME=tug-${INSTALL_TUG_NAME}
    elif [ "${CMD_TUG}" = server ]; then
        SYSTEM_NAME=tug
    else
        SYSTEM_NAME=tug-agent
    fi
    case "${SYSTEM_NAME}" in *[!a-zA-Z0-9_.-]*) fatal "INSTALL_TUG_NAME may hold only letters, digits and ._-" ;; esac
    if [ -n "${INSTALL_TUG_BIN_DIR}" ]; then
        BIN_DIR=${INSTALL_TUG_BIN_DIR}
    else
        BIN_DIR=/usr/local/bin
        probe=/usr/local/bin
        [ -d "${probe}" ] || probe=/usr/local
        if ! touch "${probe}/.tug-write-test" 2>/dev/null; then
            BIN_DIR=/opt/bin
            info "/usr/local/bin is read-only; installing to ${BIN_DIR}"
        fi
        rm -f "${probe}/.tug-write-test"
    fi
    SYSTEMD_DIR=${INSTALL_TUG_SYSTEMD_DIR:-/etc/systemd/system}
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
        INIT=systemd
        FILE_SERVICE=${SYSTEMD_DIR}/${SYSTEM_NAME}.service
        FILE_ENV=${SYSTEMD_DIR}/${SYSTEM_NAME}.service.env
    elif command -v openrc-run >/dev/null && command -v rc-update >/dev/null; then
        INIT=openrc
        FILE_SERVICE=/etc/init.d/${SYSTEM_NAME}
        FILE_ENV=/etc/tug/${SYSTEM_NAME}.env
    else
        INIT=none
        FILE_SERVICE=
        FILE_ENV=/etc/tug/${SYSTEM_NAME}.env
    fi
    KILLALL_SH=${BIN_DIR}/tug-killall.sh
    UNINSTALL_SH=${BIN_DIR}/${SYSTEM_NAME}-uninstall.sh
}

# --- the binary ----------------------------------------------------------------------------------------
setup_arch() {
    case "$(uname -m)" in
        amd64 | x86_64) ARCH=amd64 ;;
        arm64 | aarch64) ARCH=arm64 ;;
        armv7* | armhf | arm) ARCH=armv7 ;;
        *) fatal "unsupported architecture $(uname -m)" ;;
    esac
}

download() {
    case "${DOWNLOADER}" in
        curl) curl -sfL -o "$1" "$2" ;;
        wget) wget -qO "$1" "$2" ;;
    esac || fatal "cannot download $2"
}

sha256() {
    if command -v sha256sum >/dev/null; then
        sha256sum "$1" | cut -d' ' -f1
    else
        shasum -a 256 "$1" | cut -d' ' -f1
    fi
}

# Puts the new binary in ${TMP_BIN}, or sets BINARY_SAME when the installed one is already it.
fetch_binary() {
    BINARY_SAME=false
    if [ "${INSTALL_TUG_SKIP_DOWNLOAD}" = true ]; then
        [ -x "${BIN_DIR}/tug" ] || fatal "INSTALL_TUG_SKIP_DOWNLOAD is set but there is no ${BIN_DIR}/tug"
        info "using the tug already in ${BIN_DIR}"
        BINARY_SAME=true
        return
    fi
    if [ -n "${INSTALL_TUG_BINARY}" ]; then
        source=${INSTALL_TUG_BINARY#file://}
        [ -f "${source}" ] || fatal "INSTALL_TUG_BINARY: no file at ${source}"
        if [ -f "${BIN_DIR}/tug" ] && cmp -s "${source}" "${BIN_DIR}/tug"; then
            info "${BIN_DIR}/tug is already this binary"
            BINARY_SAME=true
            return
        fi
        info "installing tug from ${source}"
        cp "${source}" "${TMP_BIN}"
    else
        if command -v curl >/dev/null; then
            DOWNLOADER=curl
        elif command -v wget >/dev/null; then
            DOWNLOADER=wget
        else
            fatal "neither curl nor wget is installed"
        fi
        if [ -n "${INSTALL_TUG_DOWNLOAD_URL}" ]; then
            url=${INSTALL_TUG_DOWNLOAD_URL}/${INSTALL_TUG_VERSION:-latest}
        elif [ -n "${INSTALL_TUG_VERSION}" ]; then
            url=${GITHUB_URL}/download/${INSTALL_TUG_VERSION}
        else
            url=${GITHUB_URL}/latest/download
        fi
        info "downloading the checksum from ${url}/sha256sum-${ARCH}.txt"
        download "${TMP_DIR}/sha256sum.txt" "${url}/sha256sum-${ARCH}.txt"
        expected=$(grep -E "^[0-9a-f]{64} [ *]tug-${ARCH}\$" "${TMP_DIR}/sha256sum.txt" | cut -c1-64)
        [ -n "${expected}" ] || fatal "the checksum file names no tug-${ARCH}"
        if [ -f "${BIN_DIR}/tug" ] && [ "$(sha256 "${BIN_DIR}/tug")" = "${expected}" ]; then
            info "${BIN_DIR}/tug is already this release; skipping the download"
            BINARY_SAME=true
            return
        fi
        info "downloading ${url}/tug-${ARCH}"
        download "${TMP_BIN}" "${url}/tug-${ARCH}"
        actual=$(sha256 "${TMP_BIN}")
        [ "${actual}" = "${expected}" ] || fatal "checksum mismatch for tug-${ARCH}: expected ${expected}, got ${actual}"
    fi
}

install_binary() {
    [ "${BINARY_SAME}" = true ] && return
    mkdir -p "${BIN_DIR}"
    chown 0:0 "${TMP_BIN}"
    chmod 0755 "${TMP_BIN}"
    mv -f "${TMP_BIN}" "${BIN_DIR}/tug.new"
    # Run from the bin dir, not /tmp (which may be mounted noexec).
    if ! "${BIN_DIR}/tug.new" --version >/dev/null 2>&1; then
        rm -f "${BIN_DIR}/tug.new"
        fatal "the new tug does not run on this machine ($(uname -m))"
    fi
    # A rename, so that a running tug keeps its old file and the new one appears whole.
    mv -f "${BIN_DIR}/tug.new" "${BIN_DIR}/tug"
    info "installed ${BIN_DIR}/tug ($("${BIN_DIR}/tug" --version))"
}

# `kubectl` in the bin dir runs the system's kubectl with tug's kubeconfig (see `tug kubectl`).
install_symlink() {
    case "${INSTALL_TUG_SYMLINK}" in
        skip) return ;;
        force) ;;
        *) [ -e "${BIN_DIR}/kubectl" ] && return ;;
    esac
    ln -sf tug "${BIN_DIR}/kubectl"
}

# --- runtime dependencies ------------------------------------------------------------------------------
missing_dependencies() {
    missing=
    for command in containerd runc iptables; do
        command -v "${command}" >/dev/null || missing="${missing} ${command}"
    done
    if [ ! -x /usr/lib/cni/bridge ] && [ ! -x /opt/cni/bin/bridge ] && [ ! -x /usr/libexec/cni/bridge ]; then
        missing="${missing} cni-plugins"
    fi
    echo "${missing}"
}

install_dependencies() {
    [ "${INSTALL_TUG_SKIP_DEPS}" = true ] && return
    [ "${NEEDS_RUNTIME}" = true ] || return 0
    missing=$(missing_dependencies)
    [ -z "${missing}" ] && return
    info "installing the container runtime and networking tools (missing:${missing})"
    if command -v apt-get >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get update -q &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q containerd runc containernetworking-plugins iptables
    elif command -v apk >/dev/null; then
        apk add --no-cache containerd runc cni-plugins iptables
    elif command -v dnf >/dev/null; then
        dnf install -y containerd runc containernetworking-plugins iptables
    elif command -v yum >/dev/null; then
        yum install -y containerd runc containernetworking-plugins iptables
    elif command -v zypper >/dev/null; then
        zypper --non-interactive install containerd runc cni-plugins iptables
    fi || warn "the package manager failed"
    missing=$(missing_dependencies)
    [ -z "${missing}" ] && return
    warn "still missing:${missing}; install them (or set INSTALL_TUG_SKIP_DEPS=true to go on without)"
    fatal "tug's node agent needs containerd, runc, the CNI plugins and iptables"
}

# --- the service ---------------------------------------------------------------------------------------
write_env_file() {
    umask 077
    env | grep -E '^(TUG_|HTTP_PROXY=|HTTPS_PROXY=|NO_PROXY=|http_proxy=|https_proxy=|no_proxy=)' | sort |
        while IFS= read -r line; do
            case "${line}" in *"'"*) fatal "the value of ${line%%=*} holds a single quote" ;; esac
            printf "%s='%s'\n" "${line%%=*}" "${line#*=}"
        done >"${TMP_DIR}/env"
    umask 022
    install_if_changed "${TMP_DIR}/env" "${FILE_ENV}" 0600 restart
}

write_systemd_unit() {
    cat >"${TMP_DIR}/service" <<EOF
[Unit]
Description=tug, a lightweight Kubernetes (${CMD_TUG})
Documentation=https://github.com/tug-k8s/tug
Wants=network-online.target
After=network-online.target

[Install]
WantedBy=multi-user.target

[Service]
Type=notify
EnvironmentFile=-/etc/default/%N
EnvironmentFile=-/etc/sysconfig/%N
EnvironmentFile=-${FILE_ENV}
KillMode=process
Delegate=yes
User=root
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStartPre=-/sbin/modprobe br_netfilter
ExecStartPre=-/sbin/modprobe overlay
ExecStart=${BIN_DIR}/tug ${CMD_TUG}${ARGS_SYSTEMD}
EOF
    install_if_changed "${TMP_DIR}/service" "${FILE_SERVICE}" 0644 restart
}

write_openrc_script() {
    log=/var/log/${SYSTEM_NAME}.log
    cat >"${TMP_DIR}/service" <<EOF
#!/sbin/openrc-run

depend() {
    after network-online
    want cgroups
}

supervisor=supervise-daemon
name=${SYSTEM_NAME}
command="${BIN_DIR}/tug"
command_args="${CMD_TUG}$(printf '%s' "${ARGS_SH}" | sed -e 's/[\\"$`]/\\&/g')"
output_log=${log}
error_log=${log}
pidfile="/var/run/${SYSTEM_NAME}.pid"
respawn_delay=5
respawn_max=0

set -o allexport
if [ -f /etc/environment ]; then . /etc/environment; fi
if [ -f ${FILE_ENV} ]; then . ${FILE_ENV}; fi
set +o allexport
EOF
    install_if_changed "${TMP_DIR}/service" "${FILE_SERVICE}" 0755 restart
    cat >"${TMP_DIR}/logrotate" <<EOF
${log} {
    missingok
    notifempty
    copytruncate
    size 10M
    rotate 5
    compress
}
EOF
    install_if_changed "${TMP_DIR}/logrotate" "/etc/logrotate.d/${SYSTEM_NAME}" 0644
}

# Puts $1 at $2 with mode $3 unless $2 already holds it; with $4 "restart", a change restarts the service.
install_if_changed() {
    if [ -f "$2" ] && cmp -s "$1" "$2"; then
        chmod "$3" "$2"
        return
    fi
    chmod "$3" "$1"
    mkdir -p "$(dirname "$2")"
    mv -f "$1" "$2"
    [ "$4" = restart ] && CHANGED=true
    [ "$2" = "${FILE_SERVICE}" ] && SERVICE_FILE_CHANGED=true
    return 0
}

# --- tug-killall.sh and the uninstall script -------------------------------------------------------------
write_killall() {
    cat >"${TMP_DIR}/killall" <<EOF
#!/bin/sh
# Stops tug and everything it started on this host: its services, the containers of its containerd, their
# mounts, network namespaces, interfaces and iptables chains. The data stays (see ${UNINSTALL_SH}).
[ "\$(id -u)" -eq 0 ] || exec sudo "\$0" "\$@"
# Both can be overridden, for a tug run from elsewhere (tests, unusual layouts).
DATA_DIR=\${TUG_DATA_DIR:-"${DATA_DIR}"}
BIN=\${TUG_KILLALL_BIN:-${BIN_DIR}/tug}

for unit in ${SYSTEMD_DIR}/tug.service ${SYSTEMD_DIR}/tug-*.service; do
    [ -s "\${unit}" ] && command -v systemctl >/dev/null && systemctl stop "\$(basename "\${unit}")"
done
for script in /etc/init.d/tug /etc/init.d/tug-*; do
    [ -x "\${script}" ] && "\${script}" stop
done

# Any tug still running (started by hand): asked to stop, then killed.
tug_pids() {
    for exe in /proc/[0-9]*/exe; do
        # A tug whose file an upgrade replaced runs from "<bin> (deleted)".
        case "\$(readlink "\${exe}" 2>/dev/null)" in
            "\${BIN}" | "\${BIN} (deleted)") pid=\${exe#/proc/} && echo "\${pid%/exe}" ;;
        esac
    done
}
pids=\$(tug_pids)
if [ -n "\${pids}" ]; then
    # shellcheck disable=SC2086
    kill \${pids} 2>/dev/null
    for _ in \$(seq 25); do [ -z "\$(tug_pids)" ] && break; sleep 1; done
    # shellcheck disable=SC2046
    kill -9 \$(tug_pids) 2>/dev/null
fi

# The containers: the shims of tug's containerd and every process under them (parents from
# /proc/PID/stat: the field after the command's closing parenthesis and the state).
kill_tree() {
    for stat in /proc/[0-9]*/stat; do
        read -r line 2>/dev/null <"\${stat}" || continue
        rest=\${line##*) }
        parent=\${rest#* }
        if [ "\${parent%% *}" = "\$1" ]; then
            child=\${stat#/proc/}
            kill_tree "\${child%/stat}"
        fi
    done
    kill -9 "\$1" 2>/dev/null
}
for cmdline in /proc/[0-9]*/cmdline; do
    if tr '\0' ' ' <"\${cmdline}" 2>/dev/null | grep -q "containerd-shim.*\${DATA_DIR}/agent/containerd"; then
        pid=\${cmdline#/proc/}
        kill_tree "\${pid%/cmdline}"
    fi
done

# Mounts under the data dir and of the pods' network namespaces, deepest first.
while read -r _ mount _; do
    case "\${mount}" in "\${DATA_DIR}"/* | /run/netns/cni-*) echo "\${mount}" ;; esac
done </proc/self/mounts | sort -r | while read -r mount; do umount -l "\${mount}"; done
for netns in /run/netns/cni-*; do
    [ -e "\${netns}" ] && rm -f "\${netns}"
done

"\${BIN}" network-cleanup
EOF
    install_if_changed "${TMP_DIR}/killall" "${KILLALL_SH}" 0755
}

write_uninstall() {
    case "${INIT}" in
        systemd)
            remove_service="systemctl stop ${SYSTEM_NAME} || true
systemctl disable ${SYSTEM_NAME} || true
systemctl reset-failed ${SYSTEM_NAME} || true
rm -f ${FILE_SERVICE} ${FILE_ENV}
systemctl daemon-reload"
            ;;
        openrc)
            remove_service="rc-service ${SYSTEM_NAME} stop || true
rc-update delete ${SYSTEM_NAME} default || true
rm -f ${FILE_SERVICE} ${FILE_ENV} /etc/logrotate.d/${SYSTEM_NAME} /var/log/${SYSTEM_NAME}.log"
            ;;
        none) remove_service="rm -f ${FILE_ENV}" ;;
    esac
    cat >"${TMP_DIR}/uninstall" <<EOF
#!/bin/sh
# Removes tug's ${SYSTEM_NAME} service and, when no other tug service is left, everything tug started
# (tug-killall.sh), tug itself and its data.
[ "\$(id -u)" -eq 0 ] || exec sudo "\$0" "\$@"
set -x
${remove_service}
trap 'rm -f ${UNINSTALL_SH}' EXIT
for other in ${SYSTEMD_DIR}/tug.service ${SYSTEMD_DIR}/tug-*.service /etc/init.d/tug /etc/init.d/tug-*; do
    if [ -e "\${other}" ]; then
        set +x
        echo "Other tug services are installed (\${other}); keeping tug and its data"
        exit 0
    fi
done
TUG_DATA_DIR="${DATA_DIR}" ${KILLALL_SH}
# Never remove through a mount (a pod's hostPath volume would take host files with it).
while read -r _ mount _; do
    case "\${mount}" in
        "${DATA_DIR}"/*)
            set +x
            echo "\${mount} is still mounted; unmount it and run ${UNINSTALL_SH} again" >&2
            trap - EXIT
            exit 1
            ;;
    esac
done </proc/self/mounts
[ "\$(readlink ${BIN_DIR}/kubectl)" = tug ] && rm -f ${BIN_DIR}/kubectl
rm -rf "${DATA_DIR}" /etc/tug
rm -f ${BIN_DIR}/tug ${KILLALL_SH}
EOF
    install_if_changed "${TMP_DIR}/uninstall" "${UNINSTALL_SH}" 0755
}

# --- starting --------------------------------------------------------------------------------------------
start_service() {
    case "${INIT}" in
        systemd)
            [ "${SERVICE_FILE_CHANGED}" = true ] && systemctl daemon-reload
            [ "${INSTALL_TUG_SKIP_ENABLE}" = true ] && return
            systemctl enable "${SYSTEM_NAME}" >/dev/null 2>&1
            [ "${INSTALL_TUG_SKIP_START}" = true ] && return
            if [ "${CHANGED}" = true ] || ! systemctl is-active --quiet "${SYSTEM_NAME}"; then
                info "starting ${SYSTEM_NAME}"
                systemctl restart "${SYSTEM_NAME}"
            else
                info "${SYSTEM_NAME} is running and nothing changed"
            fi
            ;;
        openrc)
            [ "${INSTALL_TUG_SKIP_ENABLE}" = true ] && return
            rc-update add "${SYSTEM_NAME}" default >/dev/null
            [ "${INSTALL_TUG_SKIP_START}" = true ] && return
            if [ "${CHANGED}" = true ] || ! rc-service "${SYSTEM_NAME}" status >/dev/null 2>&1; then
                info "starting ${SYSTEM_NAME}"
                rc-service "${SYSTEM_NAME}" restart
            else
                info "${SYSTEM_NAME} is running and nothing changed"
            fi
            ;;
        none)
            info "no systemd or OpenRC here; start tug by hand:"
            info "  set -a; . ${FILE_ENV}; set +a; ${BIN_DIR}/tug ${CMD_TUG}${ARGS_SH}"
            ;;
    esac
}

main() {
    [ "$(id -u)" -eq 0 ] || fatal "run the installer as root (curl -sfL ... | sudo sh -)"
    setup_command "$@"
    setup_paths
    setup_arch
    TMP_DIR=$(mktemp -d -t tug-install.XXXXXX)
    TMP_BIN=${TMP_DIR}/tug
    trap 'rm -rf "${TMP_DIR}"' EXIT
    CHANGED=false
    SERVICE_FILE_CHANGED=false
    fetch_binary
    [ "${BINARY_SAME}" = true ] || CHANGED=true
    install_dependencies
    install_binary
    install_symlink
    write_killall
    write_uninstall
    write_env_file
    case "${INIT}" in
        systemd) write_systemd_unit ;;
        openrc) write_openrc_script ;;
    esac
    start_service
}

main "$@"
