app-name = tokengate
lang-switch = English
nav-security = Segurança
nav-tokens = Tokens de API
nav-instances = Instâncias
nav-oauth = Clientes OAuth
nav-usage = Uso
nav-audit = Auditoria
nav-2fa = Login em duas etapas
logout = Sair
signed-in-as = Conectado como { $email } ({ $role })

login-title = Entrar
login-email = E-mail
login-password = Senha
login-submit = Entrar
login-failed = E-mail ou senha incorretos.
login-locked = Muitas tentativas sem sucesso. Tente novamente em alguns minutos.
otp-title = Código de verificação
otp-help = Digite o código de 6 dígitos do seu aplicativo autenticador.
otp-code = Código
otp-submit = Verificar
otp-failed = Esse código não é válido.

security-title = Segurança
security-token-title = Token de Segurança da Conta
security-token-intro = Quando ativo, todas as instâncias desta conta só aceitam requisições que enviem o cabeçalho Client-Token com este token.
status = Status
status-none = Não configurado
status-disabled = Desativado
status-active = Ativo
configure-now = Configurar Agora
token-once-title = Seu novo token
token-once-warning = Guarde-o agora: ele não será exibido novamente.
copy = Copiar
copied = Copiado
activate-token = Ativar Token
deactivate-token = Desativar
rotate-token = Trocar token
grace-seconds = Período de carência (segundos)
confirm = Confirmar
cancel = Cancelar
activate-confirm-question = Requisições recentes chegaram sem este token. Elas serão recusadas quando ele estiver ativo. Ativar mesmo assim?
activated = O token está ativo.
deactivated = O token está desativado.
readiness-title = Prontidão
readiness-window = Requisições desde a criação do token (até as últimas { $hours } horas)
readiness-valid = Com o token válido
readiness-missing = Sem token
readiness-invalid = Com token errado
readiness-safe = Todas as requisições recentes enviam o token: é seguro ativar.
readiness-unsafe = Algumas requisições recentes ainda não enviam o token.
readiness-empty = Nenhuma requisição recebida ainda.
chart-requests = requisições
chart-hour = hora (UTC)
created-at = Criado em
activated-at = Ativado em
previous-valid-until = Token anterior válido até

tokens-title = Tokens de API
tokens-create = Criar um token
token-name = Nome
token-kind = Tipo
kind-api_key = Chave de API
kind-personal = Token pessoal
token-scopes = Escopos (separados por espaços)
token-expires = Expira em (dias, vazio = nunca)
token-ip = IPs permitidos (CIDRs, separados por espaços)
token-rate = Limite (requisições por minuto, vazio = sem limite)
token-create-submit = Criar
token-last-used = Último uso
token-expires-at = Expira em
token-revoked-at = Revogado em
token-revoke = Revogar
token-rotate = Trocar
token-revoked = O token foi revogado.
never = nunca
none = nenhum
actions = Ações

instances-title = Instâncias
instance-name = Nome
instance-upstream = Destino
instance-rules = Regras de rota

oauth-title = Clientes OAuth
oauth-create = Criar um cliente
oauth-client-id = Client ID
oauth-secret-once = Client secret (exibido uma única vez)

usage-title = Uso
usage-account = Requisições às instâncias desta conta, últimas 24 horas
usage-allowed = Permitidas
usage-rejected = Recusadas
usage-token = Requisições com o token { $name }

audit-title = Auditoria
audit-at = Quando
audit-actor = Quem
audit-action = Ação
audit-target = Objeto
audit-ip = Endereço

twofa-title = Login em duas etapas
twofa-on = O login em duas etapas está ativado.
twofa-off = O login em duas etapas está desativado.
twofa-scan = Leia este código com um aplicativo autenticador, ou digite a chave, e informe o código exibido.
twofa-key = Chave
twofa-enable = Ativar
twofa-disable = Desativar
twofa-bad-code = Esse código não é válido; leia o QR de novo e tente outra vez.

error-title = Algo deu errado
error-forbidden = Seu papel não permite esta ação.
error-csrf = O formulário expirou. Recarregue a página e tente de novo.
error-invalid = { $message }
back = Voltar
no-items = Nada aqui ainda.
