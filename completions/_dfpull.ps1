
using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'dfpull' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'dfpull'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'dfpull' {
            [CompletionResult]::new('--secret', '--secret', [CompletionResultType]::ParameterName, 'Shared secret of the swarm: every request must carry proof of it (an HMAC, never the secret itself) and every answer is signed with it; mDNS adverts then name no images. Prefer the environment variable or a config file to keep it out of `ps`')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read option defaults from this YAML file instead of $XDG_CONFIG_HOME/dfpull/config.yaml or /etc/dfpull/config.yaml (`/dev/null`: none). Keys are long option names with `_` for `-`, per subcommand (`peer: {out: DIR}`)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v: debug, -vv: trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v: debug, -vv: trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less log output (-q: warnings and errors only, -qq: errors only)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less log output (-q: warnings and errors only, -qq: errors only)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON lines on stdout; human output goes to stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('seed', 'seed', [CompletionResultType]::ParameterValue, 'Serve images to the LAN (seeder, with an embedded coordinator by default)')
            [CompletionResult]::new('peer', 'peer', [CompletionResultType]::ParameterValue, 'Fetch images from the swarm, save the archives and load them')
            [CompletionResult]::new('coordinator', 'coordinator', [CompletionResultType]::ParameterValue, 'Run a standalone coordinator')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Show the swarms, images and peers visible on the LAN')
            [CompletionResult]::new('inspect', 'inspect', [CompletionResultType]::ParameterValue, 'Show what a source would put in the swarm')
            [CompletionResult]::new('demo', 'demo', [CompletionResultType]::ParameterValue, 'Run a real local swarm on this machine, for a first look')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print shell completions')
            [CompletionResult]::new('man', 'man', [CompletionResultType]::ParameterValue, 'Write man pages into a directory')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'dfpull;seed' {
            [CompletionResult]::new('--listen', '--listen', [CompletionResultType]::ParameterName, 'Address to serve blocks on')
            [CompletionResult]::new('--coordinator', '--coordinator', [CompletionResultType]::ParameterName, 'Use this coordinator instead of the embedded one')
            [CompletionResult]::new('--exit-after', '--exit-after', [CompletionResultType]::ParameterName, 'Exit once this many peers have completed')
            [CompletionResult]::new('--block-size', '--block-size', [CompletionResultType]::ParameterName, 'Block size (e.g. 1MiB, 4M); `auto` picks it from the total size (see README)')
            [CompletionResult]::new('--cache-dir', '--cache-dir', [CompletionResultType]::ParameterName, 'Where compressed archives and `docker save` output are spooled while serving')
            [CompletionResult]::new('--secret', '--secret', [CompletionResultType]::ParameterName, 'Shared secret of the swarm: every request must carry proof of it (an HMAC, never the secret itself) and every answer is signed with it; mDNS adverts then name no images. Prefer the environment variable or a config file to keep it out of `ps`')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read option defaults from this YAML file instead of $XDG_CONFIG_HOME/dfpull/config.yaml or /etc/dfpull/config.yaml (`/dev/null`: none). Keys are long option names with `_` for `-`, per subcommand (`peer: {out: DIR}`)')
            [CompletionResult]::new('--no-mdns', '--no-mdns', [CompletionResultType]::ParameterName, 'Do not advertise on mDNS (peers then need --seed or --coordinator)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v: debug, -vv: trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v: debug, -vv: trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less log output (-q: warnings and errors only, -qq: errors only)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less log output (-q: warnings and errors only, -qq: errors only)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON lines on stdout; human output goes to stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'dfpull;peer' {
            [CompletionResult]::new('--coordinator', '--coordinator', [CompletionResultType]::ParameterName, 'Coordinator URL (skips mDNS discovery), e.g. http://10.0.0.1:7341')
            [CompletionResult]::new('--seed', '--seed', [CompletionResultType]::ParameterName, 'Seeder URL (skips mDNS discovery); its embedded coordinator is used')
            [CompletionResult]::new('--swarm', '--swarm', [CompletionResultType]::ParameterName, 'Join only the swarm whose id starts with this (hex, as `dfpull status` shows it), when several are on the LAN')
            [CompletionResult]::new('--discover-timeout', '--discover-timeout', [CompletionResultType]::ParameterName, 'How long to look for a swarm on mDNS before giving up')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Directory the archives are written to')
            [CompletionResult]::new('--out', '--out', [CompletionResultType]::ParameterName, 'Directory the archives are written to')
            [CompletionResult]::new('--load', '--load', [CompletionResultType]::ParameterName, 'How to load each archive once saved')
            [CompletionResult]::new('--namespace', '--namespace', [CompletionResultType]::ParameterName, 'containerd namespace to import into (`k8s.io` for the images Kubernetes sees)')
            [CompletionResult]::new('--seed-time', '--seed-time', [CompletionResultType]::ParameterName, 'Keep serving blocks this long after our own images are done (unless every peer the coordinator knows has finished first)')
            [CompletionResult]::new('--listen', '--listen', [CompletionResultType]::ParameterName, 'Address to serve blocks to other peers on')
            [CompletionResult]::new('--secret', '--secret', [CompletionResultType]::ParameterName, 'Shared secret of the swarm: every request must carry proof of it (an HMAC, never the secret itself) and every answer is signed with it; mDNS adverts then name no images. Prefer the environment variable or a config file to keep it out of `ps`')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read option defaults from this YAML file instead of $XDG_CONFIG_HOME/dfpull/config.yaml or /etc/dfpull/config.yaml (`/dev/null`: none). Keys are long option names with `_` for `-`, per subcommand (`peer: {out: DIR}`)')
            [CompletionResult]::new('--verify-saved', '--verify-saved', [CompletionResultType]::ParameterName, 'Hash each archive whole against the manifest before saving it under its name. Without this, an archive is hashed whole only when another process opened it while it was being written (or it is on a network filesystem): otherwise every byte of it was verified before it was written, and a second pass would only read back the page cache')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v: debug, -vv: trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v: debug, -vv: trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less log output (-q: warnings and errors only, -qq: errors only)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less log output (-q: warnings and errors only, -qq: errors only)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON lines on stdout; human output goes to stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'dfpull;coordinator' {
            [CompletionResult]::new('--listen', '--listen', [CompletionResultType]::ParameterName, 'Address to listen on')
            [CompletionResult]::new('--secret', '--secret', [CompletionResultType]::ParameterName, 'Shared secret of the swarm: every request must carry proof of it (an HMAC, never the secret itself) and every answer is signed with it; mDNS adverts then name no images. Prefer the environment variable or a config file to keep it out of `ps`')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read option defaults from this YAML file instead of $XDG_CONFIG_HOME/dfpull/config.yaml or /etc/dfpull/config.yaml (`/dev/null`: none). Keys are long option names with `_` for `-`, per subcommand (`peer: {out: DIR}`)')
            [CompletionResult]::new('--no-mdns', '--no-mdns', [CompletionResultType]::ParameterName, 'Do not advertise on mDNS')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v: debug, -vv: trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v: debug, -vv: trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less log output (-q: warnings and errors only, -qq: errors only)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less log output (-q: warnings and errors only, -qq: errors only)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON lines on stdout; human output goes to stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'dfpull;status' {
            [CompletionResult]::new('--coordinator', '--coordinator', [CompletionResultType]::ParameterName, 'Coordinator URL (skips mDNS discovery), e.g. http://10.0.0.1:7341')
            [CompletionResult]::new('--seed', '--seed', [CompletionResultType]::ParameterName, 'Seeder URL (skips mDNS discovery); its embedded coordinator is used')
            [CompletionResult]::new('--swarm', '--swarm', [CompletionResultType]::ParameterName, 'Join only the swarm whose id starts with this (hex, as `dfpull status` shows it), when several are on the LAN')
            [CompletionResult]::new('--discover-timeout', '--discover-timeout', [CompletionResultType]::ParameterName, 'How long to look for a swarm on mDNS before giving up')
            [CompletionResult]::new('--wait', '--wait', [CompletionResultType]::ParameterName, 'How long to listen for swarms on mDNS')
            [CompletionResult]::new('--secret', '--secret', [CompletionResultType]::ParameterName, 'Shared secret of the swarm: every request must carry proof of it (an HMAC, never the secret itself) and every answer is signed with it; mDNS adverts then name no images. Prefer the environment variable or a config file to keep it out of `ps`')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read option defaults from this YAML file instead of $XDG_CONFIG_HOME/dfpull/config.yaml or /etc/dfpull/config.yaml (`/dev/null`: none). Keys are long option names with `_` for `-`, per subcommand (`peer: {out: DIR}`)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v: debug, -vv: trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v: debug, -vv: trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less log output (-q: warnings and errors only, -qq: errors only)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less log output (-q: warnings and errors only, -qq: errors only)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON lines on stdout; human output goes to stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'dfpull;inspect' {
            [CompletionResult]::new('--block-size', '--block-size', [CompletionResultType]::ParameterName, 'Block size, as for `dfpull seed`')
            [CompletionResult]::new('--secret', '--secret', [CompletionResultType]::ParameterName, 'Shared secret of the swarm: every request must carry proof of it (an HMAC, never the secret itself) and every answer is signed with it; mDNS adverts then name no images. Prefer the environment variable or a config file to keep it out of `ps`')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read option defaults from this YAML file instead of $XDG_CONFIG_HOME/dfpull/config.yaml or /etc/dfpull/config.yaml (`/dev/null`: none). Keys are long option names with `_` for `-`, per subcommand (`peer: {out: DIR}`)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v: debug, -vv: trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v: debug, -vv: trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less log output (-q: warnings and errors only, -qq: errors only)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less log output (-q: warnings and errors only, -qq: errors only)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON lines on stdout; human output goes to stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'dfpull;demo' {
            [CompletionResult]::new('--peers', '--peers', [CompletionResultType]::ParameterName, 'Number of peer processes')
            [CompletionResult]::new('--size', '--size', [CompletionResultType]::ParameterName, 'Size of the generated image, in MB')
            [CompletionResult]::new('--load', '--load', [CompletionResultType]::ParameterName, 'How the last peer loads the image (the others do not load)')
            [CompletionResult]::new('--keep', '--keep', [CompletionResultType]::ParameterName, 'Keep the demo''s files in this directory instead of a temporary one')
            [CompletionResult]::new('--secret', '--secret', [CompletionResultType]::ParameterName, 'Shared secret of the swarm: every request must carry proof of it (an HMAC, never the secret itself) and every answer is signed with it; mDNS adverts then name no images. Prefer the environment variable or a config file to keep it out of `ps`')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read option defaults from this YAML file instead of $XDG_CONFIG_HOME/dfpull/config.yaml or /etc/dfpull/config.yaml (`/dev/null`: none). Keys are long option names with `_` for `-`, per subcommand (`peer: {out: DIR}`)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v: debug, -vv: trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v: debug, -vv: trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less log output (-q: warnings and errors only, -qq: errors only)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less log output (-q: warnings and errors only, -qq: errors only)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON lines on stdout; human output goes to stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'dfpull;completions' {
            [CompletionResult]::new('--secret', '--secret', [CompletionResultType]::ParameterName, 'Shared secret of the swarm: every request must carry proof of it (an HMAC, never the secret itself) and every answer is signed with it; mDNS adverts then name no images. Prefer the environment variable or a config file to keep it out of `ps`')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read option defaults from this YAML file instead of $XDG_CONFIG_HOME/dfpull/config.yaml or /etc/dfpull/config.yaml (`/dev/null`: none). Keys are long option names with `_` for `-`, per subcommand (`peer: {out: DIR}`)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v: debug, -vv: trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v: debug, -vv: trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less log output (-q: warnings and errors only, -qq: errors only)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less log output (-q: warnings and errors only, -qq: errors only)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON lines on stdout; human output goes to stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'dfpull;man' {
            [CompletionResult]::new('--secret', '--secret', [CompletionResultType]::ParameterName, 'Shared secret of the swarm: every request must carry proof of it (an HMAC, never the secret itself) and every answer is signed with it; mDNS adverts then name no images. Prefer the environment variable or a config file to keep it out of `ps`')
            [CompletionResult]::new('--config', '--config', [CompletionResultType]::ParameterName, 'Read option defaults from this YAML file instead of $XDG_CONFIG_HOME/dfpull/config.yaml or /etc/dfpull/config.yaml (`/dev/null`: none). Keys are long option names with `_` for `-`, per subcommand (`peer: {out: DIR}`)')
            [CompletionResult]::new('-v', '-v', [CompletionResultType]::ParameterName, 'More log output (-v: debug, -vv: trace)')
            [CompletionResult]::new('--verbose', '--verbose', [CompletionResultType]::ParameterName, 'More log output (-v: debug, -vv: trace)')
            [CompletionResult]::new('-q', '-q', [CompletionResultType]::ParameterName, 'Less log output (-q: warnings and errors only, -qq: errors only)')
            [CompletionResult]::new('--quiet', '--quiet', [CompletionResultType]::ParameterName, 'Less log output (-q: warnings and errors only, -qq: errors only)')
            [CompletionResult]::new('--json', '--json', [CompletionResultType]::ParameterName, 'Print machine-readable JSON lines on stdout; human output goes to stderr')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            break
        }
        'dfpull;help' {
            [CompletionResult]::new('seed', 'seed', [CompletionResultType]::ParameterValue, 'Serve images to the LAN (seeder, with an embedded coordinator by default)')
            [CompletionResult]::new('peer', 'peer', [CompletionResultType]::ParameterValue, 'Fetch images from the swarm, save the archives and load them')
            [CompletionResult]::new('coordinator', 'coordinator', [CompletionResultType]::ParameterValue, 'Run a standalone coordinator')
            [CompletionResult]::new('status', 'status', [CompletionResultType]::ParameterValue, 'Show the swarms, images and peers visible on the LAN')
            [CompletionResult]::new('inspect', 'inspect', [CompletionResultType]::ParameterValue, 'Show what a source would put in the swarm')
            [CompletionResult]::new('demo', 'demo', [CompletionResultType]::ParameterValue, 'Run a real local swarm on this machine, for a first look')
            [CompletionResult]::new('completions', 'completions', [CompletionResultType]::ParameterValue, 'Print shell completions')
            [CompletionResult]::new('man', 'man', [CompletionResultType]::ParameterValue, 'Write man pages into a directory')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'dfpull;help;seed' {
            break
        }
        'dfpull;help;peer' {
            break
        }
        'dfpull;help;coordinator' {
            break
        }
        'dfpull;help;status' {
            break
        }
        'dfpull;help;inspect' {
            break
        }
        'dfpull;help;demo' {
            break
        }
        'dfpull;help;completions' {
            break
        }
        'dfpull;help;man' {
            break
        }
        'dfpull;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}
