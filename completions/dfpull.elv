
use builtin;
use str;

set edit:completion:arg-completer[dfpull] = {|@words|
    fn spaces {|n|
        builtin:repeat $n ' ' | str:join ''
    }
    fn cand {|text desc|
        edit:complex-candidate $text &display=$text' '(spaces (- 14 (wcswidth $text)))$desc
    }
    var command = 'dfpull'
    for word $words[1..-1] {
        if (str:has-prefix $word '-') {
            break
        }
        set command = $command';'$word
    }
    var completions = [
        &'dfpull'= {
            cand --secret 'Shared secret of the swarm: every request must carry proof of it (an HMAC, never the secret itself) and every answer is signed with it; mDNS adverts then name no images. Prefer the environment variable or a config file to keep it out of `ps`'
            cand --config 'Read option defaults from this YAML file instead of $XDG_CONFIG_HOME/dfpull/config.yaml or /etc/dfpull/config.yaml (`/dev/null`: none). Keys are long option names with `_` for `-`, per subcommand (`peer: {out: DIR}`)'
            cand -v 'More log output (-v: debug, -vv: trace)'
            cand --verbose 'More log output (-v: debug, -vv: trace)'
            cand -q 'Less log output (-q: warnings and errors only, -qq: errors only)'
            cand --quiet 'Less log output (-q: warnings and errors only, -qq: errors only)'
            cand --json 'Print machine-readable JSON lines on stdout; human output goes to stderr'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
            cand seed 'Serve images to the LAN (seeder, with an embedded coordinator by default)'
            cand peer 'Fetch images from the swarm, save the archives and load them'
            cand coordinator 'Run a standalone coordinator'
            cand status 'Show the swarms, images and peers visible on the LAN'
            cand inspect 'Show what a source would put in the swarm'
            cand demo 'Run a real local swarm on this machine, for a first look'
            cand completions 'Print shell completions'
            cand man 'Write man pages into a directory'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'dfpull;seed'= {
            cand --listen 'Address to serve blocks on'
            cand --coordinator 'Use this coordinator instead of the embedded one'
            cand --exit-after 'Exit once this many peers have completed'
            cand --block-size 'Block size (e.g. 1MiB, 4M); `auto` picks it from the total size (see README)'
            cand --cache-dir 'Where compressed archives and `docker save` output are spooled while serving'
            cand --secret 'Shared secret of the swarm: every request must carry proof of it (an HMAC, never the secret itself) and every answer is signed with it; mDNS adverts then name no images. Prefer the environment variable or a config file to keep it out of `ps`'
            cand --config 'Read option defaults from this YAML file instead of $XDG_CONFIG_HOME/dfpull/config.yaml or /etc/dfpull/config.yaml (`/dev/null`: none). Keys are long option names with `_` for `-`, per subcommand (`peer: {out: DIR}`)'
            cand --no-mdns 'Do not advertise on mDNS (peers then need --seed or --coordinator)'
            cand -v 'More log output (-v: debug, -vv: trace)'
            cand --verbose 'More log output (-v: debug, -vv: trace)'
            cand -q 'Less log output (-q: warnings and errors only, -qq: errors only)'
            cand --quiet 'Less log output (-q: warnings and errors only, -qq: errors only)'
            cand --json 'Print machine-readable JSON lines on stdout; human output goes to stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'dfpull;peer'= {
            cand --coordinator 'Coordinator URL (skips mDNS discovery), e.g. http://10.0.0.1:7341'
            cand --seed 'Seeder URL (skips mDNS discovery); its embedded coordinator is used'
            cand --swarm 'Join only the swarm whose id starts with this (hex, as `dfpull status` shows it), when several are on the LAN'
            cand --discover-timeout 'How long to look for a swarm on mDNS before giving up'
            cand -o 'Directory the archives are written to'
            cand --out 'Directory the archives are written to'
            cand --load 'How to load each archive once saved'
            cand --namespace 'containerd namespace to import into (`k8s.io` for the images Kubernetes sees)'
            cand --seed-time 'Keep serving blocks this long after our own images are done (unless every peer the coordinator knows has finished first)'
            cand --listen 'Address to serve blocks to other peers on'
            cand --secret 'Shared secret of the swarm: every request must carry proof of it (an HMAC, never the secret itself) and every answer is signed with it; mDNS adverts then name no images. Prefer the environment variable or a config file to keep it out of `ps`'
            cand --config 'Read option defaults from this YAML file instead of $XDG_CONFIG_HOME/dfpull/config.yaml or /etc/dfpull/config.yaml (`/dev/null`: none). Keys are long option names with `_` for `-`, per subcommand (`peer: {out: DIR}`)'
            cand --verify-saved 'Hash each archive whole against the manifest before saving it under its name. Without this, an archive is hashed whole only when another process opened it while it was being written (or it is on a network filesystem): otherwise every byte of it was verified before it was written, and a second pass would only read back the page cache'
            cand -v 'More log output (-v: debug, -vv: trace)'
            cand --verbose 'More log output (-v: debug, -vv: trace)'
            cand -q 'Less log output (-q: warnings and errors only, -qq: errors only)'
            cand --quiet 'Less log output (-q: warnings and errors only, -qq: errors only)'
            cand --json 'Print machine-readable JSON lines on stdout; human output goes to stderr'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'dfpull;coordinator'= {
            cand --listen 'Address to listen on'
            cand --secret 'Shared secret of the swarm: every request must carry proof of it (an HMAC, never the secret itself) and every answer is signed with it; mDNS adverts then name no images. Prefer the environment variable or a config file to keep it out of `ps`'
            cand --config 'Read option defaults from this YAML file instead of $XDG_CONFIG_HOME/dfpull/config.yaml or /etc/dfpull/config.yaml (`/dev/null`: none). Keys are long option names with `_` for `-`, per subcommand (`peer: {out: DIR}`)'
            cand --no-mdns 'Do not advertise on mDNS'
            cand -v 'More log output (-v: debug, -vv: trace)'
            cand --verbose 'More log output (-v: debug, -vv: trace)'
            cand -q 'Less log output (-q: warnings and errors only, -qq: errors only)'
            cand --quiet 'Less log output (-q: warnings and errors only, -qq: errors only)'
            cand --json 'Print machine-readable JSON lines on stdout; human output goes to stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'dfpull;status'= {
            cand --coordinator 'Coordinator URL (skips mDNS discovery), e.g. http://10.0.0.1:7341'
            cand --seed 'Seeder URL (skips mDNS discovery); its embedded coordinator is used'
            cand --swarm 'Join only the swarm whose id starts with this (hex, as `dfpull status` shows it), when several are on the LAN'
            cand --discover-timeout 'How long to look for a swarm on mDNS before giving up'
            cand --wait 'How long to listen for swarms on mDNS'
            cand --secret 'Shared secret of the swarm: every request must carry proof of it (an HMAC, never the secret itself) and every answer is signed with it; mDNS adverts then name no images. Prefer the environment variable or a config file to keep it out of `ps`'
            cand --config 'Read option defaults from this YAML file instead of $XDG_CONFIG_HOME/dfpull/config.yaml or /etc/dfpull/config.yaml (`/dev/null`: none). Keys are long option names with `_` for `-`, per subcommand (`peer: {out: DIR}`)'
            cand -v 'More log output (-v: debug, -vv: trace)'
            cand --verbose 'More log output (-v: debug, -vv: trace)'
            cand -q 'Less log output (-q: warnings and errors only, -qq: errors only)'
            cand --quiet 'Less log output (-q: warnings and errors only, -qq: errors only)'
            cand --json 'Print machine-readable JSON lines on stdout; human output goes to stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'dfpull;inspect'= {
            cand --block-size 'Block size, as for `dfpull seed`'
            cand --secret 'Shared secret of the swarm: every request must carry proof of it (an HMAC, never the secret itself) and every answer is signed with it; mDNS adverts then name no images. Prefer the environment variable or a config file to keep it out of `ps`'
            cand --config 'Read option defaults from this YAML file instead of $XDG_CONFIG_HOME/dfpull/config.yaml or /etc/dfpull/config.yaml (`/dev/null`: none). Keys are long option names with `_` for `-`, per subcommand (`peer: {out: DIR}`)'
            cand -v 'More log output (-v: debug, -vv: trace)'
            cand --verbose 'More log output (-v: debug, -vv: trace)'
            cand -q 'Less log output (-q: warnings and errors only, -qq: errors only)'
            cand --quiet 'Less log output (-q: warnings and errors only, -qq: errors only)'
            cand --json 'Print machine-readable JSON lines on stdout; human output goes to stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'dfpull;demo'= {
            cand --peers 'Number of peer processes'
            cand --size 'Size of the generated image, in MB'
            cand --load 'How the last peer loads the image (the others do not load)'
            cand --keep 'Keep the demo''s files in this directory instead of a temporary one'
            cand --secret 'Shared secret of the swarm: every request must carry proof of it (an HMAC, never the secret itself) and every answer is signed with it; mDNS adverts then name no images. Prefer the environment variable or a config file to keep it out of `ps`'
            cand --config 'Read option defaults from this YAML file instead of $XDG_CONFIG_HOME/dfpull/config.yaml or /etc/dfpull/config.yaml (`/dev/null`: none). Keys are long option names with `_` for `-`, per subcommand (`peer: {out: DIR}`)'
            cand -v 'More log output (-v: debug, -vv: trace)'
            cand --verbose 'More log output (-v: debug, -vv: trace)'
            cand -q 'Less log output (-q: warnings and errors only, -qq: errors only)'
            cand --quiet 'Less log output (-q: warnings and errors only, -qq: errors only)'
            cand --json 'Print machine-readable JSON lines on stdout; human output goes to stderr'
            cand -h 'Print help (see more with ''--help'')'
            cand --help 'Print help (see more with ''--help'')'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'dfpull;completions'= {
            cand --secret 'Shared secret of the swarm: every request must carry proof of it (an HMAC, never the secret itself) and every answer is signed with it; mDNS adverts then name no images. Prefer the environment variable or a config file to keep it out of `ps`'
            cand --config 'Read option defaults from this YAML file instead of $XDG_CONFIG_HOME/dfpull/config.yaml or /etc/dfpull/config.yaml (`/dev/null`: none). Keys are long option names with `_` for `-`, per subcommand (`peer: {out: DIR}`)'
            cand -v 'More log output (-v: debug, -vv: trace)'
            cand --verbose 'More log output (-v: debug, -vv: trace)'
            cand -q 'Less log output (-q: warnings and errors only, -qq: errors only)'
            cand --quiet 'Less log output (-q: warnings and errors only, -qq: errors only)'
            cand --json 'Print machine-readable JSON lines on stdout; human output goes to stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'dfpull;man'= {
            cand --secret 'Shared secret of the swarm: every request must carry proof of it (an HMAC, never the secret itself) and every answer is signed with it; mDNS adverts then name no images. Prefer the environment variable or a config file to keep it out of `ps`'
            cand --config 'Read option defaults from this YAML file instead of $XDG_CONFIG_HOME/dfpull/config.yaml or /etc/dfpull/config.yaml (`/dev/null`: none). Keys are long option names with `_` for `-`, per subcommand (`peer: {out: DIR}`)'
            cand -v 'More log output (-v: debug, -vv: trace)'
            cand --verbose 'More log output (-v: debug, -vv: trace)'
            cand -q 'Less log output (-q: warnings and errors only, -qq: errors only)'
            cand --quiet 'Less log output (-q: warnings and errors only, -qq: errors only)'
            cand --json 'Print machine-readable JSON lines on stdout; human output goes to stderr'
            cand -h 'Print help'
            cand --help 'Print help'
            cand -V 'Print version'
            cand --version 'Print version'
        }
        &'dfpull;help'= {
            cand seed 'Serve images to the LAN (seeder, with an embedded coordinator by default)'
            cand peer 'Fetch images from the swarm, save the archives and load them'
            cand coordinator 'Run a standalone coordinator'
            cand status 'Show the swarms, images and peers visible on the LAN'
            cand inspect 'Show what a source would put in the swarm'
            cand demo 'Run a real local swarm on this machine, for a first look'
            cand completions 'Print shell completions'
            cand man 'Write man pages into a directory'
            cand help 'Print this message or the help of the given subcommand(s)'
        }
        &'dfpull;help;seed'= {
        }
        &'dfpull;help;peer'= {
        }
        &'dfpull;help;coordinator'= {
        }
        &'dfpull;help;status'= {
        }
        &'dfpull;help;inspect'= {
        }
        &'dfpull;help;demo'= {
        }
        &'dfpull;help;completions'= {
        }
        &'dfpull;help;man'= {
        }
        &'dfpull;help;help'= {
        }
    ]
    $completions[$command]
}
