/**
 * Die deutsche Datenschutzerklärung. Gleiche Abschnitte in gleicher Reihenfolge wie die
 * Vorlage (../shared/seed/datenschutz.de.txt) und texts-en.ts; die Fakten kommen aus der
 * Konfiguration, die Sätze sind eigene. Jede Aussage hier ist etwas, das Gatehouse tut
 * (siehe docs/privacy.md).
 */
import type { PolicyFacts } from './facts.js';
import { MAX_BOUNCER_HOURS as BOUNCER_HOURS, MAX_BOUNCER_LINES as BOUNCER_LINES } from '../../../shared/bouncer-limits.js';
import { count, durationDe as d, h2, list, p, ul, type Block, type PolicyDocument } from './format.js';

export function policyDe(f: PolicyFacts): PolicyDocument {
  const r = f.retention;
  const hosts = list(f.hosts, 'de');
  const logs = d(r.detailedLogs, 'acc');
  const logsDat = d(r.detailedLogs, 'dat');
  const blocks: Block[] = [];

  // ---- Welche Daten werden gespeichert? ----
  blocks.push(h2('Welche Daten werden gespeichert?'));
  blocks.push(p(`Der Server für ${hosts} speichert über seine Nutzer die folgenden Daten:`));
  const stored: string[] = [
    'Ihre XMPP-Adresse (Jabber-ID, JID) aus Benutzername und Domain, an der Ihr Konto erkannt wird. Adressen werden in einer einheitlichen Schreibweise verglichen, „Alice“ und „alice“ sind also dasselbe Konto.',
    `Nicht Ihr Passwort selbst: Der Server bewahrt weder das Passwort noch etwas auf, woraus es sich zurückgewinnen ließe, sondern nur gesalzene, vielfach gehashte Prüfwerte (SCRAM-Verifier, ${list(f.passwordHashes.map((h) => `SCRAM-${h}`), 'de')}), mit denen er eine Anmeldung prüfen kann. ` +
      (f.allowPlain
        ? 'Clients, die sich mit dem älteren Verfahren PLAIN anmelden, schicken das Passwort ausschließlich über die verschlüsselte Verbindung; der Server prüft es gegen diese Werte und behält es nicht.'
        : 'Es werden nur SCRAM-Anmeldungen angenommen, das Passwort gelangt also gar nicht erst zum Server.'),
    'Ihre Kontaktliste (Roster) zusammen mit der Angabe, in welche Richtung der Online-Status mit dem jeweiligen Kontakt geteilt wird (Abonnement). Sie liegt auf dem Server, damit jeder Client, mit dem Sie sich anmelden, dieselben Kontakte zeigt.',
    `Wann Ihr Konto angelegt und wann es zuletzt benutzt wurde, damit unbenutzte Konten automatisch gelöscht werden können: Ein Konto, das ${d(r.inactiveAccounts, 'acc')} lang nicht benutzt wurde, wird mit allen seinen Daten gelöscht; ${d(r.inactiveWarning, 'acc')} vorher erhält es eine Warnung als Nachricht.`,
    f.offlineMaxPerUser > 0
      ? `Solange Sie nicht angemeldet sind, werden an Sie gerichtete Nachrichten mit ihrer Ankunftszeit zwischengespeichert, damit sie Ihnen bei der nächsten Anmeldung zugestellt werden können; nach der Zustellung werden sie gelöscht. Nachrichten, die nicht innerhalb von ${d(r.offlineMessages, 'dat')} abgeholt werden, werden ungelesen gelöscht, und je Nutzer werden höchstens ${count(f.offlineMaxPerUser, 'Nachricht', 'Nachrichten')} aufbewahrt.`
      : 'Nachrichten, die an Sie gehen, während Sie nicht angemeldet sind, werden nicht gespeichert; der Absender erfährt, dass sie nicht zugestellt werden konnten.',
    `Während Sie angemeldet sind, hält der Server fest, wann Ihre Sitzung begann und wie viele Datenpakete (Stanzas) und Bytes Ihr Client gesendet und empfangen hat. So kann der Betreiber die Auslastung des Servers beobachten und die Ursache einer Überlastung finden. Endet die Sitzung, gehen die Zahlen nur noch in anonyme Statistiken ein; der Eintrag zur Sitzung selbst wird spätestens nach ${logsDat} gelöscht.`,
    `Schlägt eine Anmeldung oder Registrierung fehl, werden die IP-Adresse, von der sie kam, die Uhrzeit und der versuchte Kontoname gespeichert, um Missbrauch wie das Durchprobieren von Passwörtern rechtzeitig zu erkennen und dagegen vorzugehen: Eine Adresse, von der wiederholt Fehlversuche kommen, wird eine Zeit lang gesperrt. Diese Einträge werden nach ${logsDat} gelöscht.`,
    `Kann eine Nachricht nicht zugestellt werden, speichert der Server, wann, von wem an wen und warum die Zustellung scheiterte, niemals aber den Inhalt der Nachricht. Das ist nötig, um ein Problem zu finden, wenn sich solche Fehler häufen. Diese Einträge werden nach ${logsDat} gelöscht.`,
  ];
  if (f.uploads && r.uploads !== undefined) {
    stored.push(
      `Dateien, die Sie hochladen, um sie zu teilen (HTTP File Upload), zusammen mit Name, Größe, Typ und Zeitpunkt des Hochladens und dem Konto, das sie hochgeladen hat. Wer den Link einer Datei hat, kann sie herunterladen; der Link ist lang und zufällig und enthält weder Ihre Adresse noch den Dateinamen. Eine Datei wird ${d(r.uploads)} nach dem Hochladen gelöscht, oder früher zusammen mit Ihrem Konto. Das Protokoll des Servers verzeichnet Hoch- und Herunterladen nur mit der Zufallsnummer und der Größe, nie mit dem Dateinamen.`,
    );
  }
  if (f.groupChats) {
    const g = f.groupChats;
    stored.push(
      `Solange Sie sich in einem Gruppenchat (Multi-User Chat) des Chat-Dienstes dieses Servers aufhalten, hält der Raum Ihren Spitznamen dort, Ihre Adresse und Ihren Online-Status nur im Arbeitsspeicher. Ein Raum hält seine letzten Nachrichten nur im Arbeitsspeicher, damit später Hinzukommende sie lesen können, höchstens ${d(g.historyMaxAge, 'acc')} lang; sie werden nie auf die Festplatte geschrieben und sind nach einem Neustart des Servers verloren. Ob die anderen Teilnehmer eines Raums Ihre Adresse sehen, legt der Raum fest: nur seine Moderatoren oder alle. Ein dauerhafter Raum speichert seine Einstellungen und die Liste seiner Eigentümer, Administratoren, Mitglieder und gesperrten Adressen, bis er aufgelöst wird oder ${d(g.unusedRooms, 'acc')} lang niemand darin war; Ihr Eintrag in solchen Listen wird mit Ihrem Konto gelöscht und ist Teil Ihres Datenexports.`,
    );
  }
  blocks.push(ul(stored));

  if (f.gateways.length > 0) {
    blocks.push(
      p(`Dieser Server betreibt Netzübergänge (Gateways, Transports) zu anderen Instant-Messaging-Systemen: ${list(f.gateways, 'de')}. Wer einen Netzübergang benutzt, dessen Daten speichert dieser zusätzlich:`),
    );
    blocks.push(
      ul([
        'Benutzername und Passwort Ihres Kontos im anderen System, weil sich der Netzübergang dort in Ihrem Namen anmeldet, und bei Matrix der Wiederherstellungsschlüssel, wenn Sie ihn dem Netzübergang geben (damit er seine eigene Sitzung bestätigen und Ihre Schlüsselsicherung lesen kann). Sie werden verschlüsselt gespeichert, mit einem Schlüssel, der außerhalb der Datenbank liegt, nie in ein Protokoll geschrieben und gelöscht, wenn Sie Ihre Registrierung beim Netzübergang entfernen (der Wiederherstellungsschlüssel auch, wenn Sie den Netzübergang ihn vergessen lassen).',
        `Ein Protokoll darüber, wann für welche XMPP-Adresse eine Verbindung zum anderen System aufgebaut, beendet oder abgelehnt wurde. Es wird nach ${logsDat} gelöscht.`,
        'Damit Ihre Sitzung im anderen System nach einem Neustart ohne Lücken und Wiederholungen weiterläuft: Ihre Position darin (bei Discord die letzte Nachricht, die Sie in jedem Kanal und Direktchat gesehen haben) und, wo das System sie dafür braucht (Matrix), die Liste Ihrer Räume mit deren Namen und die Namen der Personen in Ihren Direktchats; keine Nachrichten. Diese Angaben werden gelöscht, wenn Sie Ihre Registrierung beim Netzübergang entfernen.',
        `IRC: Wenn Sie wählen, mit einem IRC-Server verbunden zu bleiben, während Sie offline sind (Sie schalten das je Server ein), hält der Netzübergang Ihre Verbindung und Ihre Kanäle. Private Nachrichten erreichen Sie über die oben beschriebene Offline-Speicherung. Was in Ihren Kanälen in der Zwischenzeit geschrieben wird, hält der Netzübergang nur im Arbeitsspeicher, höchstens ${BOUNCER_LINES} Zeilen je Kanal und höchstens ${BOUNCER_HOURS} Stunden lang, und übergibt es Ihnen, wenn Sie den Kanal wieder betreten; danach wird es vergessen. Es wird nie auf einen Datenträger geschrieben und übersteht keinen Neustart des Netzübergangs.`,
        'IRC: Netze können den Netzübergang fragen, zu welchem seiner Nutzer eine Verbindung gehört (Ident), und wo der Betreiber eine Vereinbarung mit einem Netz hat, stellt der Netzübergang Ihre Verbindungen dort vor (WEBIRC). Beide erfahren eine Kennung, die der Netzübergang mit einem geheimen Schlüssel aus Ihrer Adresse ableitet, nie Ihre Adresse und nie Ihre IP-Adresse.',
        `Wenn Sie einen Netzübergang benutzen, der im anderen System unter Ihrem eigenen Namen schreibt (Discord über den gemeinsamen Bot des Betreibers), sehen die Personen dort Ihren Spitznamen im Raum${
          f.uploads && r.uploads !== undefined
            ? ` und Ihr Profilbild aus Ihrer vCard, das dafür in den Datei-Upload-Dienst dieses Servers kopiert und ${d(r.uploads)} nach dem Kopieren gelöscht wird`
            : ''
        }.`,
        'Wo das andere System Nachrichten Ende-zu-Ende verschlüsselt (Matrix): die Schlüssel des Geräts des Netzübergangs und die Nachrichtenschlüssel, die es erhalten hat, damit es Ihre verschlüsselten Nachrichten auch nach einem Neustart lesen und senden kann. Sie werden mit demselben Schlüssel wie Ihr Passwort verschlüsselt gespeichert, nie in ein Protokoll geschrieben und gelöscht, wenn Sie Ihre Registrierung beim Netzübergang entfernen.',
        ...(f.uploads && r.uploads !== undefined
          ? [
              `Dateien, die Ihnen Personen aus dem anderen System schicken (Bilder, Dokumente), und im IRC Dateien, auf die sie in ihren Nachrichten verlinken, werden in den Datei-Upload-Dienst dieses Servers kopiert, damit Ihr Client sie anzeigen kann; der Link ist lang und zufällig. Wer dieselbe Datei oder denselben Link erhält, bekommt dieselbe Kopie. Diese Kopien gehören zu keinem Konto und werden ${d(r.uploads)} nach dem Kopieren gelöscht.`,
            ]
          : []),
      ]),
    );
  } else {
    blocks.push(p('Dieser Server betreibt derzeit keine Netzübergänge (Gateways, Transports) zu anderen Instant-Messaging-Systemen und speichert deshalb auch keine Daten für solche.'));
  }

  blocks.push(
    p(
      'Außerdem kann Ihr XMPP-Client selbst Daten auf dem Server ablegen: entweder so, dass andere Nutzer sie abrufen können (zum Beispiel eine vCard mit Kontaktangaben, ein Profilbild, einen Spitznamen oder die öffentlichen Schlüssel, die andere brauchen, um Ihnen Ende-zu-Ende-verschlüsselte Nachrichten zu schicken), oder so, dass nur Sie sie wieder lesen können (zum Beispiel Einstellungen des Clients oder Ihre Lesezeichen für Gruppenchats). Bei Daten, die er veröffentlicht, legt Ihr Client fest, wer sie lesen und von Änderungen erfahren darf: jeder, der Ihre Adresse kennt (so werden öffentliche Schlüssel gefunden), die Kontakte, die Ihren Online-Status sehen dürfen, nur diejenigen von ihnen in bestimmten Kontaktgruppen, oder nur Sie selbst; der Server hält sich bei jeder Anfrage an diese Wahl. Welche Daten, wie viele und wie lange, bestimmen Ihr Client und Sie. Alle diese Daten werden mit Ihrem Konto gelöscht.',
    ),
  );
  if (f.pepSubscriptions) {
    blocks.push(
      p(
        'Andere Nutzer, die Ihre Wahl zulässt, können solche veröffentlichten Daten außerdem abonnieren, um von jeder Änderung zu erfahren; Ihr Client kann sehen, wer das getan hat, und ein Abonnement beenden. Der Server speichert jedes Abonnement: die Adresse des Abonnenten und was er abonniert hat. ' +
          `Ein Abonnement endet, wenn der Abonnent es beendet, wenn Ihre Wahl, wer die Daten lesen darf, ihn nicht mehr einschließt (etwa wenn Sie ihn aus Ihren Kontakten entfernen), wenn die Daten gelöscht werden und wenn das Konto eines von Ihnen beiden gelöscht wird; das Abonnement einer Adresse auf einem anderen Server wird außerdem ${d(f.pepSubscriptions.remoteLifetime)} nach seinem Abschluss gelöscht, sofern der Client dieser Person es nicht erneuert. ` +
          'Ebenso speichert der Server einer anderen Person Ihre Adresse, wenn Sie deren veröffentlichte Daten abonnieren.',
      ),
    );
  }

  blocks.push(
    f.backups.schedule === 'daily'
      ? p(`Von allen oben genannten Daten wird täglich eine Sicherungskopie angelegt und ${count(f.backups.keep, 'Tag', 'Tage')} lang aufbewahrt. Bereits gelöschte Daten können deshalb in einer Sicherungskopie noch bis zu ${count(f.backups.keep, 'Tag', 'Tage')} weiterbestehen.`)
      : p('Der Server legt von diesen Daten keine automatischen Sicherungskopien an.'),
  );

  // ---- Was geschieht mit diesen Daten? ----
  blocks.push(h2('Was geschieht mit diesen Daten?'));
  blocks.push(
    p(
      'Die über Sie gespeicherten Daten werden nicht kommerziell genutzt, nicht verkauft und an niemanden weitergegeben. Den Nutzern dieses Dienstes wird keine Werbung geschickt. Die Serversoftware enthält keine Nutzungsverfolgung und keine Telemetrie: Sie baut keine Netzverbindungen auf außer denen, die ihr Betreiber eingerichtet hat.',
    ),
  );
  blocks.push(
    p(
      'Eine Ausnahme gibt es: Daten, die Sie oder Ihr Client gespeichert haben, um sie zu veröffentlichen (insbesondere eine vCard, ein Profilbild oder öffentliche Schlüssel für die Verschlüsselung), können andere Nutzer abrufen, jeweils einzeln für eine Adresse und nur die, denen Sie oder Ihr Client es erlaubt haben. Eine Suche nach Nutzern oder eine Liste der Nutzer gibt es nicht.',
    ),
  );
  blocks.push(
    p(
      'Die XMPP-Adressen der Nutzer werden nicht veröffentlicht: Es gibt kein öffentliches Verzeichnis, und die Antworten des Servers verraten nicht, ob ein Konto existiert. Machen Sie Ihre Adresse selbst öffentlich, können andere sie nutzen, um Ihnen unerwünschte Nachrichten zu schicken. Der Betreiber untersagt ausdrücklich, diesen Dienst zum Versand unerwünschter Werbung (Spam) zu nutzen, kann das aber nicht in jedem Fall durchsetzen.',
    ),
  );
  if (f.federation.enabled) {
    const fed = f.federation;
    let tls = fed.requireEncryption
      ? 'Verbindungen zu anderen Servern sind immer verschlüsselt (TLS); zu einem Server, der keine Verschlüsselung beherrscht, wird keine Verbindung aufgebaut.'
      : 'Verbindungen zu anderen Servern werden verschlüsselt (TLS), wann immer der andere Server das unterstützt.';
    tls += fed.requireValidCertificates
      ? ' Andere Server müssen sich mit einem gültigen Zertifikat ausweisen.'
      : ' Andere Server weisen sich mit einem Zertifikat aus oder, wo sie keines haben, mit dem Dialback-Verfahren.';
    if (fed.allow.length > 0) tls += ` Dieser Server tauscht Nachrichten nur mit diesen Domains aus: ${list(fed.allow, 'de')}.`;
    blocks.push(
      p(
        `Nachrichten, die Sie an Nutzer anderer Server schicken, werden an diese Server zugestellt; dort gelten dann deren Regeln und nicht die Zusicherungen dieser Erklärung. Dasselbe gilt für Informationen, die Sie für andere Nutzer bestimmt haben, etwa Ihren Online-Status für die Kontakte, denen Sie ihn freigegeben haben, und technisch bedingt für die Server, die diese Kontakte benutzen. ${tls}`,
      ),
    );
  } else {
    blocks.push(
      p(
        `Dieser Server tauscht keine Nachrichten mit anderen XMPP-Servern aus (die Föderation ist abgeschaltet): Nachrichten erreichen nur Nutzer von ${hosts}${f.gateways.length > 0 ? ' und, über die Netzübergänge, die oben genannten Systeme' : ''}.`,
      ),
    );
  }
  if (f.gateways.length > 0) {
    blocks.push(
      p(
        'Wer einen Netzübergang in ein anderes Instant-Messaging-System benutzt, dessen Privatsphäre und Daten hängen auch von diesem System ab. Manche Systeme zeigen zum Beispiel anderen den Online-Status, ohne vorher zu fragen.',
      ),
    );
  }
  blocks.push(
    p(
      'Der Server gibt die IP-Adresse eines Nutzers nie an andere Nutzer oder Server weiter: Die gesamte XMPP-Kommunikation läuft über den Server, und nichts, was er weiterleitet, enthält Ihre Adresse. Clients können sich allerdings innerhalb von Nachrichten gegenseitig ihre IP-Adressen schicken, etwa um eine Dateiübertragung zu beginnen. Solche Inhalte prüft oder verändert der Server nicht, und er selbst nennt niemandem die Adresse eines Nutzers.',
    ),
  );
  blocks.push(
    p(
      'Aus den oben genannten Daten gewinnt der Server Statistiken über Nutzung und Auslastung, die als Diagramme gezeigt werden. Sie sind anonym: Sie enthalten keine Adressen, Kontonamen oder Nachrichteninhalte und lassen keine Rückschlüsse auf einzelne Personen zu.',
    ),
  );
  blocks.push(
    p(
      `Detaillierte Einträge, die einen Nutzer oder eine IP-Adresse nennen (Sitzungen, fehlgeschlagene Anmeldungen, unzustellbare Nachrichten, Verbindungen der Netzübergänge, Protokolldateien), werden ${logs} lang aufbewahrt und danach automatisch gelöscht. Die Statistiken werden ${r.statistics === null ? 'länger aufbewahrt, ohne feste Frist' : `${d(r.statistics, 'acc')} lang aufbewahrt`}.`,
    ),
  );

  // ---- Wer hat Zugriff auf diese Daten? ----
  blocks.push(h2('Wer hat Zugriff auf diese Daten?'));
  blocks.push(
    p(
      (f.adminCount > 0
        ? `Zugriff auf die auf diesem Server gespeicherten Daten haben seine Administratoren (${count(f.adminCount, 'Konto', 'Konten')}, in der Konfiguration benannt). Lesen sie Einträge wie die Verbindungsprotokolle über die Verwaltungswerkzeuge des Servers, wird dieser Zugriff selbst protokolliert.`
        : 'Zugriff auf die auf diesem Server gespeicherten Daten hat sein Betreiber; Administratorkonten sind nicht eingerichtet.') +
        ' Außerdem können Sie selbst Daten hinterlegen, die andere Nutzer abrufen können (siehe oben).',
    ),
  );
  blocks.push(
    p(
      'Daten, die unverschlüsselt durch das Internet gehen, können an vielen Stellen mitgelesen werden. ' +
        (f.clientTlsRequired
          ? `Dieser Server nimmt Anmeldungen deshalb nur über eine verschlüsselte Verbindung an (TLS ${f.tlsMinVersion} oder neuer).`
          : `Eine verschlüsselte Verbindung zum Server (TLS ${f.tlsMinVersion} oder neuer) ist deshalb dringend zu empfehlen; dieser Server nimmt auch Verbindungen ohne sie an.`) +
        ' Das schützt die Verbindung zwischen Ihrem Client und dem Server. ' +
        (f.federation.enabled
          ? f.federation.requireEncryption
            ? 'Auch die Verbindungen dieses Servers zu anderen Servern sind verschlüsselt. '
            : 'Verbindungen zu anderen Servern werden verschlüsselt, wann immer diese es unterstützen. '
          : '') +
        (f.gateways.length > 0 ? 'Hat eine Nachricht den Server über einen Netzübergang verlassen, kann sie im anderen System unverschlüsselt weiterlaufen. ' : '') +
        'Um eine Nachricht auf dem ganzen Weg bis zum Empfänger zu schützen, empfiehlt sich Ende-zu-Ende-Verschlüsselung wie OMEMO oder OpenPGP, die viele Clients beherrschen. Der Server leitet solche Nachrichten unverändert weiter und kann sie nicht lesen.',
    ),
  );

  // ---- Anmerkungen ----
  blocks.push(h2('Anmerkungen'));
  blocks.push(
    p(
      f.contact
        ? `Unklarheiten und Fragen zu dieser Erklärung und zu Ihren Daten können Sie mit dem Betreiber des Servers klären: ${f.contact}`
        : 'Unklarheiten und Fragen zu dieser Erklärung und zu Ihren Daten können Sie mit den Administratoren des Servers klären.',
    ),
  );
  blocks.push(
    p(
      'Sie können Ihr Konto jederzeit aus Ihrem Client heraus löschen. Damit werden alle oben genannten Daten, die zu ihm gehören, sofort gelöscht' +
        (f.backups.schedule === 'daily' ? `, ausgenommen die Kopien in den Sicherungen, die nach spätestens ${count(f.backups.keep, 'Tag', 'Tagen')} verschwinden.` : '.'),
    ),
  );
  blocks.push(p('Dieser Server unterliegt dem Recht und den Datenschutzbestimmungen der Bundesrepublik Deutschland und der Europäischen Union.'));
  blocks.push(
    p(
      'Diese Erklärung kann sich ändern. Eine Änderung wird mindestens vier Wochen (28 Tage) vor ihrem Inkrafttreten angekündigt, auf dieser Seite und durch eine Nachricht an die Nutzer, die bis dahin online sind oder sich anmelden, es sei denn, technische Gründe erfordern eine kürzere Frist. Bis zum angekündigten Datum gilt die bisherige Fassung.',
    ),
  );

  return { lang: 'de', title: `Datenschutzerklärung für ${hosts}`, blocks };
}
