# SPDX-License-Identifier: LGPL-2.1-or-later
# bash completion for blegatectl(1), installed as share/bash-completion/completions/blegatectl.

_blegatectl() {
        local cur prev verb i
        local verbs="status devices anomalies sinks watch set flush reload analyze decode"
        _init_completion 2>/dev/null || {
                cur=${COMP_WORDS[COMP_CWORD]}
                prev=${COMP_WORDS[COMP_CWORD-1]}
        }

        for ((i = 1; i < COMP_CWORD; i++)); do
                case ${COMP_WORDS[i]} in
                        -*) ;;
                        *) verb=${COMP_WORDS[i]}; break ;;
                esac
        done

        if [[ -z $verb ]]; then
                COMPREPLY=($(compgen -W "$verbs --help --version" -- "$cur"))
                return
        fi

        case $verb in
                status | devices | sinks | watch)
                        COMPREPLY=($(compgen -W "--json --help" -- "$cur"))
                        ;;
                anomalies)
                        case $prev in
                                --since) COMPREPLY=($(compgen -W "-10min -1h -1d now" -- "$cur")); return ;;
                                --limit) return ;;
                        esac
                        COMPREPLY=($(compgen -W "--since --limit --json --help" -- "$cur"))
                        ;;
                set)
                        case $prev in
                                set) COMPREPLY=($(compgen -W "threshold window --help" -- "$cur")) ;;
                        esac
                        ;;
                flush | reload)
                        COMPREPLY=($(compgen -W "--help" -- "$cur"))
                        ;;
                analyze)
                        case $prev in
                                --group-by) COMPREPLY=($(compgen -W "device type" -- "$cur")); return ;;
                                --format) COMPREPLY=($(compgen -W "csv json" -- "$cur")); return ;;
                                --window | --threshold | --min-std | --min-samples | --channels) return ;;
                        esac
                        if [[ $cur == -* ]]; then
                                COMPREPLY=($(compgen -W "--window --threshold --min-std --min-samples --batch
                                                        --group-by --channels --anomalies-only --format --strict
                                                        --help" -- "$cur"))
                        else
                                COMPREPLY=($(compgen -f -- "$cur"))
                        fi
                        ;;
                decode)
                        COMPREPLY=($(compgen -W "--range --help" -- "$cur"))
                        ;;
        esac
}

complete -F _blegatectl blegatectl
