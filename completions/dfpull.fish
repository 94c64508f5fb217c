# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_dfpull_global_optspecs
    string join \n v/verbose q/quiet secret= json config= h/help V/version
end

function __fish_dfpull_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_dfpull_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_dfpull_using_subcommand
    set -l cmd (__fish_dfpull_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c dfpull -n "__fish_dfpull_needs_command" -l secret -d 'Shared secret of the swarm: every request must carry proof of it (an HMAC, never the secret itself) and every answer is signed with it; mDNS adverts then name no images. Prefer the environment variable or a config file to keep it out of `ps`' -r
complete -c dfpull -n "__fish_dfpull_needs_command" -l config -d 'Read option defaults from this YAML file instead of $XDG_CONFIG_HOME/dfpull/config.yaml or /etc/dfpull/config.yaml (`/dev/null`: none). Keys are long option names with `_` for `-`, per subcommand (`peer: {out: DIR}`)' -r -F
complete -c dfpull -n "__fish_dfpull_needs_command" -s v -l verbose -d 'More log output (-v: debug, -vv: trace)'
complete -c dfpull -n "__fish_dfpull_needs_command" -s q -l quiet -d 'Less log output (-q: warnings and errors only, -qq: errors only)'
complete -c dfpull -n "__fish_dfpull_needs_command" -l json -d 'Print machine-readable JSON lines on stdout; human output goes to stderr'
complete -c dfpull -n "__fish_dfpull_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dfpull -n "__fish_dfpull_needs_command" -s V -l version -d 'Print version'
complete -c dfpull -n "__fish_dfpull_needs_command" -f -a "seed" -d 'Serve images to the LAN (seeder, with an embedded coordinator by default)'
complete -c dfpull -n "__fish_dfpull_needs_command" -f -a "peer" -d 'Fetch images from the swarm, save the archives and load them'
complete -c dfpull -n "__fish_dfpull_needs_command" -f -a "coordinator" -d 'Run a standalone coordinator'
complete -c dfpull -n "__fish_dfpull_needs_command" -f -a "status" -d 'Show the swarms, images and peers visible on the LAN'
complete -c dfpull -n "__fish_dfpull_needs_command" -f -a "inspect" -d 'Show what a source would put in the swarm'
complete -c dfpull -n "__fish_dfpull_needs_command" -f -a "demo" -d 'Run a real local swarm on this machine, for a first look'
complete -c dfpull -n "__fish_dfpull_needs_command" -f -a "completions" -d 'Print shell completions'
complete -c dfpull -n "__fish_dfpull_needs_command" -f -a "man" -d 'Write man pages into a directory'
complete -c dfpull -n "__fish_dfpull_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c dfpull -n "__fish_dfpull_using_subcommand seed" -l listen -d 'Address to serve blocks on' -r
complete -c dfpull -n "__fish_dfpull_using_subcommand seed" -l coordinator -d 'Use this coordinator instead of the embedded one' -r
complete -c dfpull -n "__fish_dfpull_using_subcommand seed" -l exit-after -d 'Exit once this many peers have completed' -r
complete -c dfpull -n "__fish_dfpull_using_subcommand seed" -l block-size -d 'Block size (e.g. 1MiB, 4M); `auto` picks it from the total size (see README)' -r
complete -c dfpull -n "__fish_dfpull_using_subcommand seed" -l cache-dir -d 'Where compressed archives and `docker save` output are spooled while serving' -r -F
complete -c dfpull -n "__fish_dfpull_using_subcommand seed" -l secret -d 'Shared secret of the swarm: every request must carry proof of it (an HMAC, never the secret itself) and every answer is signed with it; mDNS adverts then name no images. Prefer the environment variable or a config file to keep it out of `ps`' -r
complete -c dfpull -n "__fish_dfpull_using_subcommand seed" -l config -d 'Read option defaults from this YAML file instead of $XDG_CONFIG_HOME/dfpull/config.yaml or /etc/dfpull/config.yaml (`/dev/null`: none). Keys are long option names with `_` for `-`, per subcommand (`peer: {out: DIR}`)' -r -F
complete -c dfpull -n "__fish_dfpull_using_subcommand seed" -l no-mdns -d 'Do not advertise on mDNS (peers then need --seed or --coordinator)'
complete -c dfpull -n "__fish_dfpull_using_subcommand seed" -s v -l verbose -d 'More log output (-v: debug, -vv: trace)'
complete -c dfpull -n "__fish_dfpull_using_subcommand seed" -s q -l quiet -d 'Less log output (-q: warnings and errors only, -qq: errors only)'
complete -c dfpull -n "__fish_dfpull_using_subcommand seed" -l json -d 'Print machine-readable JSON lines on stdout; human output goes to stderr'
complete -c dfpull -n "__fish_dfpull_using_subcommand seed" -s h -l help -d 'Print help'
complete -c dfpull -n "__fish_dfpull_using_subcommand seed" -s V -l version -d 'Print version'
complete -c dfpull -n "__fish_dfpull_using_subcommand peer" -l coordinator -d 'Coordinator URL (skips mDNS discovery), e.g. http://10.0.0.1:7341' -r
complete -c dfpull -n "__fish_dfpull_using_subcommand peer" -l seed -d 'Seeder URL (skips mDNS discovery); its embedded coordinator is used' -r
complete -c dfpull -n "__fish_dfpull_using_subcommand peer" -l swarm -d 'Join only the swarm whose id starts with this (hex, as `dfpull status` shows it), when several are on the LAN' -r
complete -c dfpull -n "__fish_dfpull_using_subcommand peer" -l discover-timeout -d 'How long to look for a swarm on mDNS before giving up' -r
complete -c dfpull -n "__fish_dfpull_using_subcommand peer" -s o -l out -d 'Directory the archives are written to' -r -F
complete -c dfpull -n "__fish_dfpull_using_subcommand peer" -l load -d 'How to load each archive once saved' -r -f -a "auto\t'Docker if an engine answers, else podman, else containerd, else skip with a warning'
docker\t'`docker load`'
podman\t'`podman load`'
containerd\t'`ctr images import` into the --namespace'
none\t'Only save the archive'"
complete -c dfpull -n "__fish_dfpull_using_subcommand peer" -l namespace -d 'containerd namespace to import into (`k8s.io` for the images Kubernetes sees)' -r
complete -c dfpull -n "__fish_dfpull_using_subcommand peer" -l seed-time -d 'Keep serving blocks this long after our own images are done (unless every peer the coordinator knows has finished first)' -r
complete -c dfpull -n "__fish_dfpull_using_subcommand peer" -l listen -d 'Address to serve blocks to other peers on' -r
complete -c dfpull -n "__fish_dfpull_using_subcommand peer" -l secret -d 'Shared secret of the swarm: every request must carry proof of it (an HMAC, never the secret itself) and every answer is signed with it; mDNS adverts then name no images. Prefer the environment variable or a config file to keep it out of `ps`' -r
complete -c dfpull -n "__fish_dfpull_using_subcommand peer" -l config -d 'Read option defaults from this YAML file instead of $XDG_CONFIG_HOME/dfpull/config.yaml or /etc/dfpull/config.yaml (`/dev/null`: none). Keys are long option names with `_` for `-`, per subcommand (`peer: {out: DIR}`)' -r -F
complete -c dfpull -n "__fish_dfpull_using_subcommand peer" -l verify-saved -d 'Hash each archive whole against the manifest before saving it under its name. Without this, an archive is hashed whole only when another process opened it while it was being written (or it is on a network filesystem): otherwise every byte of it was verified before it was written, and a second pass would only read back the page cache'
complete -c dfpull -n "__fish_dfpull_using_subcommand peer" -s v -l verbose -d 'More log output (-v: debug, -vv: trace)'
complete -c dfpull -n "__fish_dfpull_using_subcommand peer" -s q -l quiet -d 'Less log output (-q: warnings and errors only, -qq: errors only)'
complete -c dfpull -n "__fish_dfpull_using_subcommand peer" -l json -d 'Print machine-readable JSON lines on stdout; human output goes to stderr'
complete -c dfpull -n "__fish_dfpull_using_subcommand peer" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dfpull -n "__fish_dfpull_using_subcommand peer" -s V -l version -d 'Print version'
complete -c dfpull -n "__fish_dfpull_using_subcommand coordinator" -l listen -d 'Address to listen on' -r
complete -c dfpull -n "__fish_dfpull_using_subcommand coordinator" -l secret -d 'Shared secret of the swarm: every request must carry proof of it (an HMAC, never the secret itself) and every answer is signed with it; mDNS adverts then name no images. Prefer the environment variable or a config file to keep it out of `ps`' -r
complete -c dfpull -n "__fish_dfpull_using_subcommand coordinator" -l config -d 'Read option defaults from this YAML file instead of $XDG_CONFIG_HOME/dfpull/config.yaml or /etc/dfpull/config.yaml (`/dev/null`: none). Keys are long option names with `_` for `-`, per subcommand (`peer: {out: DIR}`)' -r -F
complete -c dfpull -n "__fish_dfpull_using_subcommand coordinator" -l no-mdns -d 'Do not advertise on mDNS'
complete -c dfpull -n "__fish_dfpull_using_subcommand coordinator" -s v -l verbose -d 'More log output (-v: debug, -vv: trace)'
complete -c dfpull -n "__fish_dfpull_using_subcommand coordinator" -s q -l quiet -d 'Less log output (-q: warnings and errors only, -qq: errors only)'
complete -c dfpull -n "__fish_dfpull_using_subcommand coordinator" -l json -d 'Print machine-readable JSON lines on stdout; human output goes to stderr'
complete -c dfpull -n "__fish_dfpull_using_subcommand coordinator" -s h -l help -d 'Print help'
complete -c dfpull -n "__fish_dfpull_using_subcommand coordinator" -s V -l version -d 'Print version'
complete -c dfpull -n "__fish_dfpull_using_subcommand status" -l coordinator -d 'Coordinator URL (skips mDNS discovery), e.g. http://10.0.0.1:7341' -r
complete -c dfpull -n "__fish_dfpull_using_subcommand status" -l seed -d 'Seeder URL (skips mDNS discovery); its embedded coordinator is used' -r
complete -c dfpull -n "__fish_dfpull_using_subcommand status" -l swarm -d 'Join only the swarm whose id starts with this (hex, as `dfpull status` shows it), when several are on the LAN' -r
complete -c dfpull -n "__fish_dfpull_using_subcommand status" -l discover-timeout -d 'How long to look for a swarm on mDNS before giving up' -r
complete -c dfpull -n "__fish_dfpull_using_subcommand status" -l wait -d 'How long to listen for swarms on mDNS' -r
complete -c dfpull -n "__fish_dfpull_using_subcommand status" -l secret -d 'Shared secret of the swarm: every request must carry proof of it (an HMAC, never the secret itself) and every answer is signed with it; mDNS adverts then name no images. Prefer the environment variable or a config file to keep it out of `ps`' -r
complete -c dfpull -n "__fish_dfpull_using_subcommand status" -l config -d 'Read option defaults from this YAML file instead of $XDG_CONFIG_HOME/dfpull/config.yaml or /etc/dfpull/config.yaml (`/dev/null`: none). Keys are long option names with `_` for `-`, per subcommand (`peer: {out: DIR}`)' -r -F
complete -c dfpull -n "__fish_dfpull_using_subcommand status" -s v -l verbose -d 'More log output (-v: debug, -vv: trace)'
complete -c dfpull -n "__fish_dfpull_using_subcommand status" -s q -l quiet -d 'Less log output (-q: warnings and errors only, -qq: errors only)'
complete -c dfpull -n "__fish_dfpull_using_subcommand status" -l json -d 'Print machine-readable JSON lines on stdout; human output goes to stderr'
complete -c dfpull -n "__fish_dfpull_using_subcommand status" -s h -l help -d 'Print help'
complete -c dfpull -n "__fish_dfpull_using_subcommand status" -s V -l version -d 'Print version'
complete -c dfpull -n "__fish_dfpull_using_subcommand inspect" -l block-size -d 'Block size, as for `dfpull seed`' -r
complete -c dfpull -n "__fish_dfpull_using_subcommand inspect" -l secret -d 'Shared secret of the swarm: every request must carry proof of it (an HMAC, never the secret itself) and every answer is signed with it; mDNS adverts then name no images. Prefer the environment variable or a config file to keep it out of `ps`' -r
complete -c dfpull -n "__fish_dfpull_using_subcommand inspect" -l config -d 'Read option defaults from this YAML file instead of $XDG_CONFIG_HOME/dfpull/config.yaml or /etc/dfpull/config.yaml (`/dev/null`: none). Keys are long option names with `_` for `-`, per subcommand (`peer: {out: DIR}`)' -r -F
complete -c dfpull -n "__fish_dfpull_using_subcommand inspect" -s v -l verbose -d 'More log output (-v: debug, -vv: trace)'
complete -c dfpull -n "__fish_dfpull_using_subcommand inspect" -s q -l quiet -d 'Less log output (-q: warnings and errors only, -qq: errors only)'
complete -c dfpull -n "__fish_dfpull_using_subcommand inspect" -l json -d 'Print machine-readable JSON lines on stdout; human output goes to stderr'
complete -c dfpull -n "__fish_dfpull_using_subcommand inspect" -s h -l help -d 'Print help'
complete -c dfpull -n "__fish_dfpull_using_subcommand inspect" -s V -l version -d 'Print version'
complete -c dfpull -n "__fish_dfpull_using_subcommand demo" -l peers -d 'Number of peer processes' -r
complete -c dfpull -n "__fish_dfpull_using_subcommand demo" -l size -d 'Size of the generated image, in MB' -r
complete -c dfpull -n "__fish_dfpull_using_subcommand demo" -l load -d 'How the last peer loads the image (the others do not load)' -r -f -a "auto\t'Docker if an engine answers, else podman, else containerd, else skip with a warning'
docker\t'`docker load`'
podman\t'`podman load`'
containerd\t'`ctr images import` into the --namespace'
none\t'Only save the archive'"
complete -c dfpull -n "__fish_dfpull_using_subcommand demo" -l keep -d 'Keep the demo\'s files in this directory instead of a temporary one' -r -F
complete -c dfpull -n "__fish_dfpull_using_subcommand demo" -l secret -d 'Shared secret of the swarm: every request must carry proof of it (an HMAC, never the secret itself) and every answer is signed with it; mDNS adverts then name no images. Prefer the environment variable or a config file to keep it out of `ps`' -r
complete -c dfpull -n "__fish_dfpull_using_subcommand demo" -l config -d 'Read option defaults from this YAML file instead of $XDG_CONFIG_HOME/dfpull/config.yaml or /etc/dfpull/config.yaml (`/dev/null`: none). Keys are long option names with `_` for `-`, per subcommand (`peer: {out: DIR}`)' -r -F
complete -c dfpull -n "__fish_dfpull_using_subcommand demo" -s v -l verbose -d 'More log output (-v: debug, -vv: trace)'
complete -c dfpull -n "__fish_dfpull_using_subcommand demo" -s q -l quiet -d 'Less log output (-q: warnings and errors only, -qq: errors only)'
complete -c dfpull -n "__fish_dfpull_using_subcommand demo" -l json -d 'Print machine-readable JSON lines on stdout; human output goes to stderr'
complete -c dfpull -n "__fish_dfpull_using_subcommand demo" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c dfpull -n "__fish_dfpull_using_subcommand demo" -s V -l version -d 'Print version'
complete -c dfpull -n "__fish_dfpull_using_subcommand completions" -l secret -d 'Shared secret of the swarm: every request must carry proof of it (an HMAC, never the secret itself) and every answer is signed with it; mDNS adverts then name no images. Prefer the environment variable or a config file to keep it out of `ps`' -r
complete -c dfpull -n "__fish_dfpull_using_subcommand completions" -l config -d 'Read option defaults from this YAML file instead of $XDG_CONFIG_HOME/dfpull/config.yaml or /etc/dfpull/config.yaml (`/dev/null`: none). Keys are long option names with `_` for `-`, per subcommand (`peer: {out: DIR}`)' -r -F
complete -c dfpull -n "__fish_dfpull_using_subcommand completions" -s v -l verbose -d 'More log output (-v: debug, -vv: trace)'
complete -c dfpull -n "__fish_dfpull_using_subcommand completions" -s q -l quiet -d 'Less log output (-q: warnings and errors only, -qq: errors only)'
complete -c dfpull -n "__fish_dfpull_using_subcommand completions" -l json -d 'Print machine-readable JSON lines on stdout; human output goes to stderr'
complete -c dfpull -n "__fish_dfpull_using_subcommand completions" -s h -l help -d 'Print help'
complete -c dfpull -n "__fish_dfpull_using_subcommand completions" -s V -l version -d 'Print version'
complete -c dfpull -n "__fish_dfpull_using_subcommand man" -l secret -d 'Shared secret of the swarm: every request must carry proof of it (an HMAC, never the secret itself) and every answer is signed with it; mDNS adverts then name no images. Prefer the environment variable or a config file to keep it out of `ps`' -r
complete -c dfpull -n "__fish_dfpull_using_subcommand man" -l config -d 'Read option defaults from this YAML file instead of $XDG_CONFIG_HOME/dfpull/config.yaml or /etc/dfpull/config.yaml (`/dev/null`: none). Keys are long option names with `_` for `-`, per subcommand (`peer: {out: DIR}`)' -r -F
complete -c dfpull -n "__fish_dfpull_using_subcommand man" -s v -l verbose -d 'More log output (-v: debug, -vv: trace)'
complete -c dfpull -n "__fish_dfpull_using_subcommand man" -s q -l quiet -d 'Less log output (-q: warnings and errors only, -qq: errors only)'
complete -c dfpull -n "__fish_dfpull_using_subcommand man" -l json -d 'Print machine-readable JSON lines on stdout; human output goes to stderr'
complete -c dfpull -n "__fish_dfpull_using_subcommand man" -s h -l help -d 'Print help'
complete -c dfpull -n "__fish_dfpull_using_subcommand man" -s V -l version -d 'Print version'
complete -c dfpull -n "__fish_dfpull_using_subcommand help; and not __fish_seen_subcommand_from seed peer coordinator status inspect demo completions man help" -f -a "seed" -d 'Serve images to the LAN (seeder, with an embedded coordinator by default)'
complete -c dfpull -n "__fish_dfpull_using_subcommand help; and not __fish_seen_subcommand_from seed peer coordinator status inspect demo completions man help" -f -a "peer" -d 'Fetch images from the swarm, save the archives and load them'
complete -c dfpull -n "__fish_dfpull_using_subcommand help; and not __fish_seen_subcommand_from seed peer coordinator status inspect demo completions man help" -f -a "coordinator" -d 'Run a standalone coordinator'
complete -c dfpull -n "__fish_dfpull_using_subcommand help; and not __fish_seen_subcommand_from seed peer coordinator status inspect demo completions man help" -f -a "status" -d 'Show the swarms, images and peers visible on the LAN'
complete -c dfpull -n "__fish_dfpull_using_subcommand help; and not __fish_seen_subcommand_from seed peer coordinator status inspect demo completions man help" -f -a "inspect" -d 'Show what a source would put in the swarm'
complete -c dfpull -n "__fish_dfpull_using_subcommand help; and not __fish_seen_subcommand_from seed peer coordinator status inspect demo completions man help" -f -a "demo" -d 'Run a real local swarm on this machine, for a first look'
complete -c dfpull -n "__fish_dfpull_using_subcommand help; and not __fish_seen_subcommand_from seed peer coordinator status inspect demo completions man help" -f -a "completions" -d 'Print shell completions'
complete -c dfpull -n "__fish_dfpull_using_subcommand help; and not __fish_seen_subcommand_from seed peer coordinator status inspect demo completions man help" -f -a "man" -d 'Write man pages into a directory'
complete -c dfpull -n "__fish_dfpull_using_subcommand help; and not __fish_seen_subcommand_from seed peer coordinator status inspect demo completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
